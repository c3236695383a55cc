-- guestauth schema 4: the webhook outbox. A write's lifecycle events are
-- inserted in the write's own transaction, so an acknowledged write never
-- loses its event when the node that made it dies; any node configured
-- with the same webhook (target: a hash of its URL, never the secret)
-- claims due rows with a lease, posts them, and deletes them once the
-- receiver accepted them. id is the event id, sent on every attempt.
CREATE TABLE guestauth_outbox (
	id         text COLLATE "C" NOT NULL,
	target     text COLLATE "C" NOT NULL,
	type       text NOT NULL,
	body       bytea NOT NULL,
	-- Noisy (coalesced) rows are delivered after the others.
	noisy      boolean NOT NULL DEFAULT false,
	created_ns bigint NOT NULL,
	-- Due at next_ns (unix ns), unless a node's lease runs until lease_ns.
	next_ns    bigint NOT NULL,
	lease_ns   bigint NOT NULL DEFAULT 0,
	attempts   integer NOT NULL DEFAULT 0,
	CONSTRAINT guestauth_outbox_pkey PRIMARY KEY (id)
);
CREATE INDEX guestauth_outbox_due ON guestauth_outbox (target, noisy, created_ns, id);

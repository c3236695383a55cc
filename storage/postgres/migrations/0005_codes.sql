-- guestauth schema 5: flow states, the single-use records that expire
-- (authorization codes, authorization requests waiting for a sign-in,
-- logouts waiting for confirmation). Only the SHA-256 of a record's kind
-- and handle is stored (storage.FlowKey), never the handle: a copy of the
-- database cannot redeem an outstanding code. A take marks the row spent
-- (spent_ns) rather than deleting it, so a replay until expires_ns is told
-- apart from an unknown handle; expired rows are deleted a few at a time
-- by later writes.
CREATE TABLE guestauth_flows (
	hash       bytea NOT NULL,
	expires_ns bigint NOT NULL,
	spent_ns   bigint NOT NULL DEFAULT 0,
	data       jsonb NOT NULL,
	CONSTRAINT guestauth_flows_pkey PRIMARY KEY (hash)
);
CREATE INDEX guestauth_flows_expires ON guestauth_flows (expires_ns);

-- guestauth schema 2: the change log that keeps every node's identity
-- cache coherent. Each write transaction that changes what a request should
-- see (a user, a session; not activity times) adds one row naming the
-- records it changed, and notifies channel guestauth_changes; every node
-- reads the rows committed since its last read (see follow.go) and drops
-- those records from its cache. xid is the writing transaction's id: a
-- reader asks for the rows of transactions not finished at its previous
-- read, so a transaction that commits late is never skipped.
CREATE TABLE guestauth_changes (
	seq      bigserial PRIMARY KEY,
	xid      xid8 NOT NULL DEFAULT pg_current_xact_id(),
	at       timestamptz NOT NULL DEFAULT now(),
	-- The writing process (random per open store): it skips its own rows,
	-- having updated its cache as it wrote.
	origin   text NOT NULL DEFAULT '',
	users    text[] NOT NULL,
	sessions text[] NOT NULL
);
CREATE INDEX guestauth_changes_xid ON guestauth_changes (xid);
CREATE INDEX guestauth_changes_at ON guestauth_changes (at);

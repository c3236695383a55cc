-- guestauth schema 3: cluster-wide limits. One row per (limit, key) holds
-- the GCRA theoretical arrival time in Unix nanoseconds: the bucket is full
-- once tat_ns is not after now, so such rows are deleted (in small batches,
-- as later tries come in) without changing any answer.
CREATE TABLE guestauth_limits (
	name   text NOT NULL,
	key    text NOT NULL,
	tat_ns bigint NOT NULL,
	PRIMARY KEY (name, key)
);
CREATE INDEX guestauth_limits_tat ON guestauth_limits (tat_ns);

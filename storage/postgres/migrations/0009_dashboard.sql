-- guestauth schema 9: the dashboard's counters (storage.DailyStore).
--
-- Daily counters, in shards so that concurrent writes on many nodes do not
-- queue on one row (a write picks one shard and updates its rows in
-- (day, series) order, after the guest counters: the lock order); Daily
-- sums the shards.
CREATE TABLE guestauth_daily (
	day    date NOT NULL,
	series text COLLATE "C" NOT NULL,
	shard  integer NOT NULL,
	n      bigint NOT NULL DEFAULT 0,
	CONSTRAINT guestauth_daily_pkey PRIMARY KEY (day, series, shard)
);

-- The number of users, kept with the guest counters so that Stats reads
-- sixteen rows rather than counting the users table.
ALTER TABLE guestauth_guest_counts ADD COLUMN users bigint NOT NULL DEFAULT 0;
UPDATE guestauth_guest_counts SET users = (SELECT count(*) FROM guestauth_users) WHERE shard = 0;

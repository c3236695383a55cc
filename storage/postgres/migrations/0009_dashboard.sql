-- guestauth schema 9: the dashboard's counters (storage.DailyStore).
--
-- Daily counters, in shards so that concurrent writes on many nodes do not
-- queue on one row (a write picks one shard, 1 to 15, and updates its rows
-- in (day, series) order, after the guest counters: the lock order); Daily
-- sums the shards. CompactCounters folds the shards of past days into
-- shard 0, which no write uses, so a day in the past is one row per series.
CREATE TABLE guestauth_daily (
	day    date NOT NULL,
	series text COLLATE "C" NOT NULL,
	shard  integer NOT NULL,
	n      bigint NOT NULL DEFAULT 0,
	CONSTRAINT guestauth_daily_pkey PRIMARY KEY (day, series, shard)
);
CREATE INDEX guestauth_daily_unfolded ON guestauth_daily (day) WHERE shard <> 0;

-- The numbers of users and of sessions, kept with the guest counters so
-- that Stats reads sixteen rows rather than counting two tables.
ALTER TABLE guestauth_guest_counts ADD COLUMN users bigint NOT NULL DEFAULT 0;
ALTER TABLE guestauth_guest_counts ADD COLUMN sessions bigint NOT NULL DEFAULT 0;
UPDATE guestauth_guest_counts SET users = (SELECT count(*) FROM guestauth_users),
	sessions = (SELECT count(*) FROM guestauth_sessions) WHERE shard = 0;

-- The idle index (guestauth_users.idle_ns) counted by UTC hour of the
-- activity time, in shards as above: CountIdleGuests sums the hours before
-- a time (one row per hour and shard with any) and counts the last hour's
-- users from the index, instead of counting every idle guest. Writes use
-- shards 1 to 16 (by user); a row whose count reaches 0 is deleted by the
-- write that empties it; CompactCounters folds the hours before the last
-- two into shard 0 (a shard's row may go negative after that, when a user
-- counted there moves away: the sum stays right).
CREATE TABLE guestauth_idle_hours (
	hour  bigint NOT NULL,
	shard integer NOT NULL,
	n     bigint NOT NULL,
	CONSTRAINT guestauth_idle_hours_pkey PRIMARY KEY (hour, shard)
);
CREATE INDEX guestauth_idle_hours_unfolded ON guestauth_idle_hours (hour) WHERE shard <> 0;
INSERT INTO guestauth_idle_hours (hour, shard, n)
	SELECT floor(idle_ns / 3600000000000.0)::bigint, 0, count(*) FROM guestauth_users WHERE idle_ns IS NOT NULL GROUP BY 1;

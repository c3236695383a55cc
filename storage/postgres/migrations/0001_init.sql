-- guestauth schema 1: users, their name index, sessions, device keys,
-- signing keys, challenges, guest counters. Records are stored as the JSON
-- of the storage package's types (data); the other columns index them and
-- are rewritten with the record in the same statement. Keys compare
-- bytewise (COLLATE "C"), as the storage contract's orderings do.

CREATE TABLE guestauth_users (
	id       text COLLATE "C" NOT NULL,
	name_key text COLLATE "C" NOT NULL,
	tag      text NOT NULL,
	-- ActiveAt (unix ns) of ephemeral users that are not kept: the index
	-- behind ScanIdleGuests; NULL for the others.
	idle_ns  bigint,
	-- In ScanOrphans' index.
	orphan   boolean NOT NULL DEFAULT false,
	data     jsonb NOT NULL,
	CONSTRAINT guestauth_users_pkey PRIMARY KEY (id)
);
-- Created after the primary key, so a create repeating both an id and a
-- name reports the id (ErrExists), as the contract says.
CREATE UNIQUE INDEX guestauth_users_name_key ON guestauth_users (name_key);
CREATE INDEX guestauth_users_idle ON guestauth_users (idle_ns, id) WHERE idle_ns IS NOT NULL;
CREATE INDEX guestauth_users_orphan ON guestauth_users (id) WHERE orphan;

CREATE TABLE guestauth_sessions (
	id         text COLLATE "C" NOT NULL,
	user_id    text COLLATE "C" NOT NULL REFERENCES guestauth_users (id) ON DELETE CASCADE,
	created_ns bigint NOT NULL,
	-- EndsAt (unix ns): the index behind DeleteEndedSessions.
	ends_ns    bigint NOT NULL,
	data       jsonb NOT NULL,
	CONSTRAINT guestauth_sessions_pkey PRIMARY KEY (id)
);
CREATE INDEX guestauth_sessions_user ON guestauth_sessions (user_id, created_ns, id);
CREATE INDEX guestauth_sessions_ends ON guestauth_sessions (ends_ns, id);

CREATE TABLE guestauth_devices (
	kid     text COLLATE "C" NOT NULL,
	user_id text COLLATE "C" NOT NULL REFERENCES guestauth_users (id) ON DELETE CASCADE,
	data    jsonb NOT NULL,
	CONSTRAINT guestauth_devices_pkey PRIMARY KEY (kid)
);
CREATE INDEX guestauth_devices_user ON guestauth_devices (user_id);

CREATE TABLE guestauth_signing_keys (
	kid        text COLLATE "C" NOT NULL,
	created_ns bigint NOT NULL,
	data       jsonb NOT NULL,
	CONSTRAINT guestauth_signing_keys_pkey PRIMARY KEY (kid)
);

-- Only the SHA-256 of a challenge token is stored.
CREATE TABLE guestauth_challenges (
	hash       bytea NOT NULL,
	expires_ns bigint NOT NULL,
	data       jsonb NOT NULL,
	CONSTRAINT guestauth_challenges_pkey PRIMARY KEY (hash)
);
CREATE INDEX guestauth_challenges_expires ON guestauth_challenges (expires_ns);

-- Guest counters, in shards so that concurrent guest creations on many
-- nodes do not queue on one row; GuestCounts sums them.
CREATE TABLE guestauth_guest_counts (
	shard integer NOT NULL PRIMARY KEY,
	live  bigint NOT NULL DEFAULT 0,
	kept  bigint NOT NULL DEFAULT 0
);
INSERT INTO guestauth_guest_counts (shard) SELECT generate_series(0, 15);

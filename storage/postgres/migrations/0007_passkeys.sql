-- guestauth schema 7: passkeys (WebAuthn credentials). id is the
-- credential id (base64url); a passkey goes with its user. The user's
-- record counts its passkeys (model.User.Passkeys), written in the same
-- transaction.
CREATE TABLE guestauth_passkeys (
	id         text COLLATE "C" NOT NULL,
	user_id    text COLLATE "C" NOT NULL REFERENCES guestauth_users (id) ON DELETE CASCADE,
	created_ns bigint NOT NULL,
	data       jsonb NOT NULL,
	CONSTRAINT guestauth_passkeys_pkey PRIMARY KEY (id)
);
CREATE INDEX guestauth_passkeys_user ON guestauth_passkeys (user_id, created_ns, id);

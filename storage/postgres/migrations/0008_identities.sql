-- guestauth schema 8: identity links, an account at another provider
-- (an OpenID Connect issuer and the subject it names) linked to a user
-- (model.IdentityLink). An issuer and subject are linked to one user at
-- most (the primary key); a user's links go with it (ON DELETE CASCADE).
CREATE TABLE guestauth_identities (
	issuer    text COLLATE "C" NOT NULL,
	subject   text COLLATE "C" NOT NULL,
	user_id   text COLLATE "C" NOT NULL REFERENCES guestauth_users (id) ON DELETE CASCADE,
	linked_ns bigint NOT NULL,
	data      jsonb NOT NULL,
	CONSTRAINT guestauth_identities_pkey PRIMARY KEY (issuer, subject)
);
CREATE INDEX guestauth_identities_user ON guestauth_identities (user_id, linked_ns);

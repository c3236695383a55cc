-- guestauth schema 6: the verified-email index. email_key is the
-- model.EmailKey of a user's verified address (User.VerifiedEmailKey),
-- NULL while it has none, so an unverified address takes nothing; the
-- unique index makes a verified address one user's (ErrEmailTaken).
ALTER TABLE guestauth_users ADD COLUMN email_key text COLLATE "C";
CREATE UNIQUE INDEX guestauth_users_email_key ON guestauth_users (email_key);

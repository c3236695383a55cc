package accounts

import (
	"context"
	"errors"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// CauseSelf is the cause of user.deleted when users delete their own
// account (DeleteAccount).
const CauseSelf = "self"

// DeleteAccount deletes id's user at its own request, with its sessions and
// device key, reporting user.deleted (cause CauseSelf) so the app deletes
// the user's data too; the user's tokens and browser sessions stop working
// at once. A user with a password must give it (password): the check is
// the old-password check of a password change (the session's, the
// account's and the client IP's budgets spent before the hash), so a stolen
// session cannot delete the account, nor guess the password faster than it
// could change it. A user without one (a guest) needs only its session;
// confirming the intent is the caller's (a page asks first). A user
// deleted meanwhile is not an error: the account is gone either way.
func (s *Service) DeleteAccount(ctx context.Context, id *Identity, password, clientIP string) error {
	if id.User.PasswordHash != "" {
		if password == "" {
			return refuse(CodeWrongPassword, "Deleting this account needs its password.")
		}
		ok, err := s.proveCurrentPassword(ctx, id, password, clientIP)
		if err != nil {
			return err
		}
		if !ok {
			return refuse(CodeWrongPassword, "The password is incorrect.")
		}
	}
	if _, err := s.DeleteUser(ctx, id.User.ID, CauseSelf); err != nil && !errors.Is(err, model.ErrNotFound) {
		return err
	}
	return nil
}

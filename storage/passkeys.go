package storage

import (
	"context"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// PasskeyStore is the part of Backend that keeps users' passkeys
// (model.Passkey). A passkey belongs to one user and goes with it
// (DeleteUser, DeleteUsersIf); the user's record counts them
// (User.Passkeys), written in the same transaction as the passkeys, so
// a user with a passkey is never taken for an ephemeral one.
type PasskeyStore interface {
	// AddPasskey stores p for its user and, in the same transaction,
	// applies fn (may be nil) to the user and raises its Passkeys count,
	// moving the name index entry as UpdateUser does. ErrNotFound: no such
	// user; ErrExists: the credential id is stored (for any user). An
	// error from fn is returned and nothing is written. It returns the
	// updated user; its TxResult is empty.
	AddPasskey(ctx context.Context, p *model.Passkey, fn func(u *model.User) error, ev Events) (*model.User, error)
	// GetPasskey reads the passkey with credential id id (ErrNotFound).
	GetPasskey(ctx context.Context, id string) (*model.Passkey, error)
	// ListPasskeys returns a user's passkeys by CreatedAt, then ID (none
	// for an unknown user).
	ListPasskeys(ctx context.Context, userID string) ([]model.Passkey, error)
	// UpdatePasskey applies fn to the stored passkey and saves it (its ID
	// and UserID cannot change). An error from fn is returned and nothing
	// is written. fn may be called again with a newer version, as for
	// UpdateUser.
	UpdatePasskey(ctx context.Context, id string, fn func(p *model.Passkey) error) (*model.Passkey, error)
	// DeletePasskey deletes the passkey id of user userID (ErrNotFound
	// unless it exists and is that user's) and lowers the user's Passkeys
	// count, in one transaction; check (may be nil) is called first with
	// the user as it would be after, and its error is returned with
	// nothing written (so "not the last way to sign in" holds against a
	// concurrent removal). Its TxResult is empty.
	DeletePasskey(ctx context.Context, userID, id string, check func(u *model.User) error, ev Events) error
}

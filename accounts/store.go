package accounts

import (
	"context"
	"time"

	"github.com/guestauth/caddy-guestauth/storage"
)

// Store is what the Service needs from persistence. Its methods behave as
// storage.Backend documents them; every backend satisfies it.
type Store interface {
	CreateUser(ctx context.Context, u *storage.User, s *storage.Session, dev *storage.Device) error
	GetUser(ctx context.Context, id string) (*storage.User, error)
	GetUserByName(ctx context.Context, name string) (*storage.User, error)
	UpdateUser(ctx context.Context, id string, fn func(u *storage.User) error) (*storage.User, error)
	DeleteUser(ctx context.Context, id string) error

	Identity(ctx context.Context, userID, sessionID string) (*storage.User, *storage.Session, error)
	GetSession(ctx context.Context, id string) (*storage.Session, error)
	UpdateSession(ctx context.Context, id string, fn func(s *storage.Session) error) (*storage.Session, error)
	PutSessionLimit(ctx context.Context, s *storage.Session, keep int) (int, error)
	DeleteSession(ctx context.Context, id string) error
	DeleteUserSessions(ctx context.Context, userID, keep string) (int, error)

	GetDevice(ctx context.Context, kid string) (*storage.Device, error)
	PutChallenge(ctx context.Context, token string, c storage.Challenge) error
	ConsumeChallenge(ctx context.Context, token string, now time.Time) (*storage.Challenge, error)

	GuestCounts(ctx context.Context) (live, kept int64, err error)
}

// ActivityStore is what Activity needs: one write of many activity times.
type ActivityStore interface {
	TouchUsers(ctx context.Context, at map[string]time.Time) (int, error)
}

// SessionSweeper is what SweepSessions needs.
type SessionSweeper interface {
	DeleteEndedSessions(ctx context.Context, now time.Time, limit int) (int, error)
}

// PruneStore is what Prune needs: the population index queries, and a
// delete that re-checks each user inside its transaction.
type PruneStore interface {
	ScanIdleGuests(ctx context.Context, before time.Time, fn func(u *storage.User) bool) error
	ScanOrphans(ctx context.Context, fn func(u *storage.User) bool) error
	DeleteUsersIf(ctx context.Context, ids []string, pred func(u *storage.User) bool) ([]storage.User, error)
}

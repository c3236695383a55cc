package accounts

import (
	"context"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Store is what the Service needs from persistence. Its methods behave as
// storage.Backend documents them; every backend satisfies it.
type Store interface {
	CreateUser(ctx context.Context, u *model.User, s *model.Session, dev *model.Device) error
	GetUser(ctx context.Context, id string) (*model.User, error)
	GetUserByName(ctx context.Context, name string) (*model.User, error)
	UpdateUser(ctx context.Context, id string, fn func(u *model.User) error) (*model.User, error)
	DeleteUser(ctx context.Context, id string) error

	Identity(ctx context.Context, userID, sessionID string) (*model.User, *model.Session, error)
	GetSession(ctx context.Context, id string) (*model.Session, error)
	UpdateSession(ctx context.Context, id string, fn func(s *model.Session) error) (*model.Session, error)
	PutSessionLimit(ctx context.Context, s *model.Session, keep int) (int, error)
	DeleteSession(ctx context.Context, id string) error
	DeleteUserSessions(ctx context.Context, userID, keep string) (int, error)

	GetDevice(ctx context.Context, kid string) (*model.Device, error)
	PutChallenge(ctx context.Context, token string, c model.Challenge) error
	ConsumeChallenge(ctx context.Context, token string, now time.Time) (*model.Challenge, error)

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
	ScanIdleGuests(ctx context.Context, before time.Time, fn func(u *model.User) bool) error
	ScanOrphans(ctx context.Context, fn func(u *model.User) bool) error
	DeleteUsersIf(ctx context.Context, ids []string, pred func(u *model.User) bool) ([]model.User, error)
}

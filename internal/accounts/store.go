package accounts

import (
	"context"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Store is what the Service needs from persistence. Its methods behave as
// storage.Backend documents them; every backend satisfies it. The writes
// that report events take the storage.Events that stores them with the
// write (nil when the Service has no Stager).
type Store interface {
	CreateUser(ctx context.Context, u *model.User, s *model.Session, dev *model.Device, ev storage.Events) error
	GetUser(ctx context.Context, id string) (*model.User, error)
	GetUserByName(ctx context.Context, name string) (*model.User, error)
	GetUserByEmail(ctx context.Context, email string) (*model.User, error)
	UpdateUser(ctx context.Context, id string, fn func(u *model.User) error, ev storage.Events) (*model.User, error)
	DeleteUser(ctx context.Context, id string, ev storage.Events) error

	Identity(ctx context.Context, userID, sessionID string) (*model.User, *model.Session, error)
	// IdentityCache is what Identity reads through (Authenticate reads
	// through it when a token is newer than the cached session).
	IdentityCache() *storage.IdentityCache
	GetSession(ctx context.Context, id string) (*model.Session, error)
	UpdateSession(ctx context.Context, id string, fn func(s *model.Session) error, ev storage.Events) (*model.Session, error)
	PutSessionLimit(ctx context.Context, s *model.Session, keep int) (int, error)
	DeleteSession(ctx context.Context, id string, ev storage.Events) error
	DeleteUserSessions(ctx context.Context, userID, keep string, ev storage.Events) (int, error)

	GetDevice(ctx context.Context, kid string) (*model.Device, error)
	PutChallenge(ctx context.Context, token string, c model.Challenge) error
	ConsumeChallenge(ctx context.Context, token string, now time.Time) (*model.Challenge, error)
	FlowStore
	IdentityStore

	GuestCounts(ctx context.Context) (live, kept int64, err error)
	// ListUsers and Stats serve the managing clients (manage.go).
	ListUsers(ctx context.Context, after, tag string, limit int) (users []model.User, next string, err error)
	Stats(ctx context.Context) (*storage.Stats, error)
}

// IdentityStore is what provider sign-ins need: the identity links
// (storage.Backend documents the methods).
type IdentityStore interface {
	LinkIdentity(ctx context.Context, l model.IdentityLink, fn func(u *model.User) error, ev storage.Events) (*model.User, error)
	GetIdentityLink(ctx context.Context, issuer, subject string) (*model.IdentityLink, error)
	ListIdentityLinks(ctx context.Context, userID string) ([]model.IdentityLink, error)
	UnlinkIdentity(ctx context.Context, userID, issuer, subject string, allow func(u *model.User) error, ev storage.Events) error
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
// delete that re-checks each user inside its transaction (and stores the
// guest.expired events with it).
type PruneStore interface {
	ScanIdleGuests(ctx context.Context, before time.Time, fn func(u *model.User) bool) error
	ScanOrphans(ctx context.Context, fn func(u *model.User) bool) error
	DeleteUsersIf(ctx context.Context, ids []string, pred func(u *model.User) bool, ev storage.Events) ([]model.User, error)
}

// LimitStore is what StoreLimit needs: token buckets kept in the store
// (storage.SharedLimiter documents them).
type LimitStore interface {
	LimitTake(ctx context.Context, name, key string, burst int, interval time.Duration, now time.Time) (time.Duration, error)
	LimitRefund(ctx context.Context, name, key string, interval time.Duration) error
	LimitReset(ctx context.Context, name, key string) error
}

package accounts_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
	_ "github.com/guestauth/caddy-guestauth/storage/bolt" // storage.Open's default kind
)

var bg = context.Background()

// Every backend provides what accounts needs (as raft-boltdb's
// TestBoltStore_Implements checks its LogStore).
func TestBackendImplementsAccountsStores(t *testing.T) {
	var (
		_ accounts.Store          = storage.Backend(nil)
		_ accounts.ActivityStore  = storage.Backend(nil)
		_ accounts.SessionSweeper = storage.Backend(nil)
		_ accounts.PruneStore     = storage.Backend(nil)
		_ storage.Backend         = (*countingStore)(nil)
	)
}

// openStore opens a bbolt store in a temporary directory, through the
// backend registry, counting its writes.
func openStore(t *testing.T) *countingStore {
	t.Helper()
	st, err := storage.Open(bg, storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "accounts.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &countingStore{Backend: st}
}

// countingStore counts calls of the store's writing methods.
type countingStore struct {
	storage.Backend
	writes atomic.Uint64
}

func (c *countingStore) Writes() uint64 { return c.writes.Load() }

func (c *countingStore) CreateUser(ctx context.Context, u *model.User, s *model.Session, d *model.Device, ev storage.Events) error {
	c.writes.Add(1)
	return c.Backend.CreateUser(ctx, u, s, d, ev)
}

func (c *countingStore) UpdateUser(ctx context.Context, id string, fn func(*model.User) error, ev storage.Events) (*model.User, error) {
	c.writes.Add(1)
	return c.Backend.UpdateUser(ctx, id, fn, ev)
}

func (c *countingStore) DeleteUser(ctx context.Context, id string, ev storage.Events) error {
	c.writes.Add(1)
	return c.Backend.DeleteUser(ctx, id, ev)
}

func (c *countingStore) UpdateSession(ctx context.Context, id string, fn func(*model.Session) error, ev storage.Events) (*model.Session, error) {
	c.writes.Add(1)
	return c.Backend.UpdateSession(ctx, id, fn, ev)
}

func (c *countingStore) PutSession(ctx context.Context, s *model.Session) error {
	c.writes.Add(1)
	return c.Backend.PutSession(ctx, s)
}

func (c *countingStore) PutSessionLimit(ctx context.Context, s *model.Session, keep int) (int, error) {
	c.writes.Add(1)
	return c.Backend.PutSessionLimit(ctx, s, keep)
}

func (c *countingStore) DeleteSession(ctx context.Context, id string, ev storage.Events) error {
	c.writes.Add(1)
	return c.Backend.DeleteSession(ctx, id, ev)
}

func (c *countingStore) DeleteUserSessions(ctx context.Context, userID, keep string, ev storage.Events) (int, error) {
	c.writes.Add(1)
	return c.Backend.DeleteUserSessions(ctx, userID, keep, ev)
}

func (c *countingStore) DeleteEndedSessions(ctx context.Context, now time.Time, limit int) (int, error) {
	c.writes.Add(1)
	return c.Backend.DeleteEndedSessions(ctx, now, limit)
}

func (c *countingStore) PutChallenge(ctx context.Context, token string, ch model.Challenge) error {
	c.writes.Add(1)
	return c.Backend.PutChallenge(ctx, token, ch)
}

func (c *countingStore) ConsumeChallenge(ctx context.Context, token string, now time.Time) (*model.Challenge, error) {
	c.writes.Add(1)
	return c.Backend.ConsumeChallenge(ctx, token, now)
}

func (c *countingStore) TouchUsers(ctx context.Context, at map[string]time.Time) (int, error) {
	c.writes.Add(1)
	return c.Backend.TouchUsers(ctx, at)
}

func (c *countingStore) DeleteUsersIf(ctx context.Context, ids []string, pred func(*model.User) bool, ev storage.Events) ([]model.User, error) {
	c.writes.Add(1)
	return c.Backend.DeleteUsersIf(ctx, ids, pred, ev)
}

func (c *countingStore) AddSigningKey(ctx context.Context, k model.SigningKey) error {
	c.writes.Add(1)
	return c.Backend.AddSigningKey(ctx, k)
}

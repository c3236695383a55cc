package bolt

import (
	"context"
	"sync"

	"github.com/guestauth/caddy-guestauth/storage"
)

// locks are the store's locks. bbolt gives the file to one process, so a
// lock held in this process is held against every user of the store:
// these satisfy the contract PostgreSQL's advisory locks do across nodes.
type locks struct {
	keys  chan struct{} // the signing-key lock: a token in it is held
	mu    sync.Mutex
	sweep map[string]bool // sweep locks held, by name
}

func newLocks() locks {
	return locks{keys: make(chan struct{}, 1), sweep: map[string]bool{}}
}

// LockSigningKeys implements storage.Backend.
func (b *Store) LockSigningKeys(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := storage.CtxErr(ctx); err != nil {
		return err
	}
	select {
	case b.locks.keys <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-b.locks.keys }()
	return fn(ctx)
}

// TryLockSweep implements storage.Backend.
func (b *Store) TryLockSweep(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error) {
	if err := storage.CtxErr(ctx); err != nil {
		return false, err
	}
	b.locks.mu.Lock()
	if b.locks.sweep[name] {
		b.locks.mu.Unlock()
		return false, nil
	}
	b.locks.sweep[name] = true
	b.locks.mu.Unlock()
	defer func() {
		b.locks.mu.Lock()
		delete(b.locks.sweep, name)
		b.locks.mu.Unlock()
	}()
	return true, fn(ctx)
}

package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/admin"
	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
	"github.com/guestauth/caddy-guestauth/internal/outbox"
	"github.com/guestauth/caddy-guestauth/internal/pages"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	// The storage modules (guest_auth.storage.bolt, .postgres) register
	// themselves: a build with this handler has both kinds.
	_ "github.com/guestauth/caddy-guestauth/storage/bolt"
	_ "github.com/guestauth/caddy-guestauth/storage/postgres"
)

// StorageConfig chooses the store: a module of the guest_auth.storage
// namespace, named by its kind (bolt.Module, postgres.Module: each backend
// registers its own). In JSON it is either a string, the path of a bbolt
// file, or the module's object:
//
//	"storage": "/var/lib/caddy/guestauth.db"
//	"storage": {"kind": "bolt", "path": "/var/lib/caddy/guestauth.db"}
//	"storage": {"kind": "postgres", "dsn": "{env.GUEST_AUTH_DATABASE_URL}", "max_conns": 8}
//
// (an object without kind is a bbolt one, as it always was). In the
// Caddyfile: `storage <path>` (one argument is always a bbolt file's
// path), or `storage <kind> ...`, whatever that kind reads:
// `storage bolt <path>`, `storage postgres <dsn> [{ ... }]`.
type StorageConfig struct {
	// BackendRaw is the store's module, {"kind": "...", its options}.
	BackendRaw json.RawMessage `json:"-" caddy:"namespace=guest_auth.storage inline_key=kind"`
}

// defaultStorage is the store of a config that names none: a bbolt file
// at the default path.
var defaultStorage = json.RawMessage(`{"kind":"bolt"}`)

// MarshalJSON writes a bbolt store of only a path as the plain path
// string, the form every existing config uses, and anything else as the
// module's object (caddyopt.MarshalStorage).
func (c StorageConfig) MarshalJSON() ([]byte, error) { return caddyopt.MarshalStorage(c.BackendRaw) }

// UnmarshalJSON reads either form, and refuses a kind no module provides
// (caddyopt.UnmarshalStorage).
func (c *StorageConfig) UnmarshalJSON(b []byte) (err error) {
	c.BackendRaw, err = caddyopt.UnmarshalStorage(b)
	return err
}

// unmarshalCaddyfile reads the `storage` option, d at its name
// (caddyopt.StorageCaddyfile).
func (c *StorageConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) (err error) {
	c.BackendRaw, err = caddyopt.StorageCaddyfile(d)
	return err
}

// load loads and provisions the store's module (the default store when
// none is configured).
func (c *StorageConfig) load(ctx caddy.Context) (storage.Module, error) {
	if len(c.BackendRaw) == 0 {
		c.BackendRaw = defaultStorage
	}
	mod, err := ctx.LoadModule(c, "BackendRaw")
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	sb, ok := mod.(storage.Module)
	if !ok {
		return nil, fmt.Errorf("storage: module %T is not a guest_auth store", mod)
	}
	return sb, nil
}

// store is what this package needs from a storage backend: what accounts,
// tokens and the outbox need, plus what the admin API, the CLI, the sweeps
// and the pool use. Every storage.Backend is one.
type store interface {
	accounts.Store
	accounts.ActivityStore
	accounts.SessionSweeper
	accounts.PruneStore
	accounts.LimitStore
	accounts.PasskeyStore
	tokens.KeyStore
	outbox.Store
	admin.Store
	storage.DailyStore
	pages.AdminStore

	// TryLockSweep is the store's sweep lock: a periodic sweep runs in one
	// place at a time of all the processes and configs using the store.
	TryLockSweep(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error)
	Shared() bool
	Close() error
}

// Every backend is a store.
var _ store = storage.Backend(nil)

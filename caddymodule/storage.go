package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
)

// StorageConfig chooses the store. In JSON it is either a string, the path
// of a bbolt file, or an object naming the kind:
//
//	"storage": "/var/lib/caddy/guestauth.db"
//	"storage": {"kind": "bolt", "path": "/var/lib/caddy/guestauth.db"}
//	"storage": {"kind": "postgres", "dsn": "{env.GUEST_AUTH_DATABASE_URL}"}
//
// In the Caddyfile: `storage <path>`, `storage bolt <path>` or
// `storage postgres <dsn> [{ max_conns <n>; statement_timeout <d>; skip_migrate;
// sync_interval <d>; max_staleness <d> }]`.
type StorageConfig struct {
	// Kind of store: `bolt` (the default), an embedded bbolt file that one
	// Caddy process uses at a time; or `postgres`, a PostgreSQL database
	// that any number of Caddy instances share.
	Kind string `json:"kind,omitempty"`
	// Path of the bbolt file (placeholders allowed; relative to Caddy's
	// working directory). Default: `guest_auth/guestauth.db` in Caddy's data
	// directory.
	Path string `json:"path,omitempty"`
	// DSN is the PostgreSQL connection string, a libpq URL
	// (postgres://user:password@host:5432/db?sslmode=verify-full) or
	// key=value pairs. Use a placeholder ({env.GUEST_AUTH_DATABASE_URL},
	// {file./run/secrets/db}) so the password stays out of the config: it
	// is resolved when the store opens and never logged; logs, errors and
	// the admin API name the store as postgres://user@host:port/db.
	DSN string `json:"dsn,omitempty"`
	// MaxConns bounds this instance's PostgreSQL connection pool
	// (default 16).
	MaxConns int `json:"max_conns,omitempty"`
	// StatementTimeout bounds each PostgreSQL statement, and how long a
	// request waits on the database before it is answered 503 (default 5s).
	StatementTimeout caddy.Duration `json:"statement_timeout,omitempty"`
	// SkipMigrate: do not create or migrate the PostgreSQL schema at start;
	// refuse to start unless it is at this build's version (for
	// deployments that run `caddy guest-auth migrate` separately, with a
	// database role that may change the schema).
	SkipMigrate bool `json:"skip_migrate,omitempty"`
	// SyncInterval is how often each instance reads the PostgreSQL change
	// log when no notification woke it (default 250ms): another instance's
	// change (an upgrade, a logout, a deletion, a revocation, a keep mark)
	// reaches this instance's identity cache within about this interval,
	// at once when the notification arrives.
	SyncInterval caddy.Duration `json:"sync_interval,omitempty"`
	// MaxStaleness is how long an instance that could not read the change
	// log keeps trusting its identity cache (default 5s); past it, every
	// request reads its identity from the database (or gets 503 while the
	// database is down).
	MaxStaleness caddy.Duration `json:"max_staleness,omitempty"`
}

// MarshalJSON writes a bbolt store as the plain path string, the form every
// existing config uses.
func (c StorageConfig) MarshalJSON() ([]byte, error) {
	if c.Kind == "" || c.Kind == storage.KindBolt {
		return json.Marshal(c.Path)
	}
	type plain StorageConfig
	return json.Marshal(plain(c))
}

// UnmarshalJSON reads either form.
func (c *StorageConfig) UnmarshalJSON(b []byte) error {
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '"' {
		*c = StorageConfig{}
		return json.Unmarshal(b, &c.Path)
	}
	type plain StorageConfig
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("storage: want a bbolt file path or {\"kind\": ..., \"path\": ...}: %w", err)
	}
	*c = StorageConfig(p)
	return nil
}

// resolve checks the config and makes the storage.Config to open.
func (c StorageConfig) resolve(repl *caddy.Replacer) (storage.Config, error) {
	kind := c.Kind
	if kind == "" {
		kind = storage.KindBolt
	}
	if kind == postgres.Kind {
		if c.Path != "" {
			return storage.Config{}, errors.New("postgres storage takes a dsn, not a path")
		}
		dsn := repl.ReplaceKnown(c.DSN, "")
		if strings.TrimSpace(dsn) == "" {
			return storage.Config{}, errors.New("postgres storage needs a dsn (a postgres:// URL or key=value pairs; use a placeholder such as {env.GUEST_AUTH_DATABASE_URL})")
		}
		if c.MaxConns < 0 || c.StatementTimeout < 0 || c.SyncInterval < 0 || c.MaxStaleness < 0 {
			return storage.Config{}, errors.New("postgres storage: max_conns, statement_timeout, sync_interval and max_staleness cannot be negative")
		}
		return storage.Config{Kind: kind, Location: dsn, MaxConns: c.MaxConns,
			StatementTimeout: time.Duration(c.StatementTimeout), SkipMigrate: c.SkipMigrate,
			SyncInterval: time.Duration(c.SyncInterval), MaxStaleness: time.Duration(c.MaxStaleness)}, nil
	}
	if c.DSN != "" || c.MaxConns != 0 || c.StatementTimeout != 0 || c.SkipMigrate || c.SyncInterval != 0 || c.MaxStaleness != 0 {
		return storage.Config{}, errors.New("dsn, max_conns, statement_timeout, skip_migrate, sync_interval and max_staleness are options of postgres storage")
	}
	if kind != storage.KindBolt {
		return storage.Config{}, fmt.Errorf("unknown storage kind %q (known: %s)", c.Kind, strings.Join(storage.Kinds(), ", "))
	}
	path := repl.ReplaceKnown(c.Path, "")
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "guest_auth", "guestauth.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return storage.Config{}, err
	}
	return storage.Config{Kind: kind, Location: abs, LockTimeout: lockTimeout}, nil
}

// poolKey names an open store in storePool and in the admin API's storage
// parameter: a bbolt file by its absolute path, as before; other kinds as
// "<kind>:<location>", where a PostgreSQL location is its description
// without the password (postgres:postgres://user@host:port/db): the key is
// shown in errors and admin answers. Configs naming one database with
// different passwords share the pool opened first.
func poolKey(cfg storage.Config) string {
	switch cfg.Kind {
	case storage.KindBolt:
		return cfg.Location
	case postgres.Kind:
		return cfg.Kind + ":" + postgres.DescribeDSN(cfg.Location)
	}
	return cfg.Kind + ":" + cfg.Location
}

// store is what this package needs from a storage backend: what accounts
// and tokens need, plus what the admin API, the CLI and the pool use.
type store interface {
	accounts.Store
	accounts.ActivityStore
	accounts.SessionSweeper
	accounts.PruneStore
	tokens.KeyStore

	DeleteUser(ctx context.Context, id string) error
	ListUsers(ctx context.Context, after, tag string, limit int) (users []model.User, next string, err error)
	Stats(ctx context.Context) (*storage.Stats, error)
	Backup(ctx context.Context, w io.Writer, size func(n int64)) (int64, error)
	Describe() string
	Close() error
}

// openStore opens the backend cfg names.
func openStore(ctx context.Context, cfg storage.Config) (store, error) {
	return storage.Open(ctx, cfg)
}

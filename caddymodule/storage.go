package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/outbox"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
)

func init() {
	caddy.RegisterModule(BoltStorage{})
	caddy.RegisterModule(PostgresStorage{})
}

// storageNamespace is the Caddy module namespace of the stores: each kind
// of store is the module guest_auth.storage.<kind>.
const storageNamespace = "guest_auth.storage"

// StorageConfig chooses the store: a module of the guest_auth.storage
// namespace, named by its kind (BoltStorage, PostgresStorage). In JSON it
// is either a string, the path of a bbolt file, or the module's object:
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

// StorageBackend is a guest_auth.storage module: one kind of store and
// its options, which it checks and resolves (placeholders) when
// provisioned.
type StorageBackend interface {
	caddy.Module
	// StoreKey names the store: configs naming the same store get the
	// same key and share one open store (and the admin API's storage
	// parameter names it by this key). It never holds a password.
	StoreKey() string
	// OpenStore opens the store.
	OpenStore(ctx context.Context) (storage.Backend, error)
}

// defaultStorage is the store of a config that names none: a bbolt file
// at the default path.
var defaultStorage = json.RawMessage(`{"kind":"bolt"}`)

// MarshalJSON writes a bbolt store of only a path as the plain path
// string, the form every existing config uses, and anything else as the
// module's object.
func (c StorageConfig) MarshalJSON() ([]byte, error) {
	if len(c.BackendRaw) == 0 {
		return []byte(`""`), nil
	}
	var plain struct {
		Kind string `json:"kind"`
		Path string `json:"path"`
	}
	dec := json.NewDecoder(bytes.NewReader(c.BackendRaw))
	dec.DisallowUnknownFields()
	if dec.Decode(&plain) == nil && plain.Kind == storage.KindBolt {
		return json.Marshal(plain.Path)
	}
	return c.BackendRaw, nil
}

// UnmarshalJSON reads either form, and refuses a kind no module provides.
func (c *StorageConfig) UnmarshalJSON(b []byte) error {
	*c = StorageConfig{}
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '"' {
		var path string
		if err := json.Unmarshal(b, &path); err != nil {
			return err
		}
		if path != "" {
			c.BackendRaw = caddyconfig.JSONModuleObject(BoltStorage{Path: path}, "kind", storage.KindBolt, nil)
		}
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		return fmt.Errorf("storage: want a bbolt file path or {\"kind\": ..., ...}: %s", b)
	}
	kind := storage.KindBolt
	if raw, ok := obj["kind"]; ok {
		if err := json.Unmarshal(raw, &kind); err != nil {
			return fmt.Errorf("storage: kind: %w", err)
		}
	} else {
		obj["kind"], _ = json.Marshal(kind)
	}
	if _, err := caddy.GetModule(storageNamespace + "." + kind); err != nil {
		return unknownKind(kind)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	c.BackendRaw = raw
	return nil
}

func unknownKind(kind string) error {
	var known []string
	for _, m := range caddy.GetModules(storageNamespace) {
		known = append(known, m.ID.Name())
	}
	slices.Sort(known)
	return fmt.Errorf("unknown storage kind %q (known: %s)", kind, strings.Join(known, ", "))
}

// unmarshalCaddyfile reads the `storage` option, d at its name.
func (c *StorageConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	seg := d.NextSegment()
	if len(seg) == 1 {
		*c = StorageConfig{BackendRaw: caddyconfig.JSONModuleObject(BoltStorage{Path: seg[0].Text}, "kind", storage.KindBolt, nil)}
		return nil
	}
	kind := seg[0].Text
	info, err := caddy.GetModule(storageNamespace + "." + kind)
	if err != nil {
		return d.Err(unknownKind(kind).Error())
	}
	unm, ok := info.New().(caddyfile.Unmarshaler)
	if !ok {
		return d.Errf("storage kind %q has no Caddyfile syntax; configure it in JSON", kind)
	}
	if err := unm.UnmarshalCaddyfile(caddyfile.NewDispenser(seg)); err != nil {
		return err
	}
	*c = StorageConfig{BackendRaw: caddyconfig.JSONModuleObject(unm, "kind", kind, nil)}
	return nil
}

// load loads and provisions the store's module (the default store when
// none is configured).
func (c *StorageConfig) load(ctx caddy.Context) (StorageBackend, error) {
	if len(c.BackendRaw) == 0 {
		c.BackendRaw = defaultStorage
	}
	mod, err := ctx.LoadModule(c, "BackendRaw")
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	sb, ok := mod.(StorageBackend)
	if !ok {
		return nil, fmt.Errorf("storage: module %T is not a guest_auth store", mod)
	}
	return sb, nil
}

// BoltStorage is the default store, kind `bolt` (Caddy module
// guest_auth.storage.bolt): an embedded bbolt file that one Caddy process
// uses at a time (it locks the file). Its webhook outbox, limits and locks
// are in the file too. Caddyfile: `storage <path>` or `storage bolt
// <path>`.
type BoltStorage struct {
	// Path of the bbolt file (placeholders allowed; relative to Caddy's
	// working directory). Default: `guest_auth/guestauth.db` in Caddy's
	// data directory.
	Path string `json:"path,omitempty"`

	abs string
}

var (
	_ StorageBackend        = (*BoltStorage)(nil)
	_ caddy.Provisioner     = (*BoltStorage)(nil)
	_ caddyfile.Unmarshaler = (*BoltStorage)(nil)
)

// CaddyModule returns the Caddy module information.
func (BoltStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: storageNamespace + "." + storage.KindBolt, New: func() caddy.Module { return new(BoltStorage) }}
}

// Provision resolves the path.
func (b *BoltStorage) Provision(caddy.Context) error {
	path := caddy.NewReplacer().ReplaceKnown(b.Path, "")
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "guest_auth", "guestauth.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	b.abs = abs
	return nil
}

// StoreKey implements StorageBackend: the file's absolute path.
func (b *BoltStorage) StoreKey() string { return b.abs }

// lockTimeout bounds the wait when another process holds the file.
const lockTimeout = 3 * time.Second

// OpenStore implements StorageBackend.
func (b *BoltStorage) OpenStore(context.Context) (storage.Backend, error) {
	return bolt.Open(b.abs, bolt.Options{LockTimeout: lockTimeout})
}

// UnmarshalCaddyfile reads `bolt <path>`.
func (b *BoltStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the kind
	if !d.AllArgs(&b.Path) {
		return d.ArgErr()
	}
	return nil
}

// PostgresStorage is the store of kind `postgres` (Caddy module
// guest_auth.storage.postgres): a PostgreSQL database that any number of
// Caddy instances share. They must all set the same issuer (Caddy refuses
// to start otherwise): they share its signing keys. Caddyfile:
//
//	storage postgres <dsn> {
//	    max_conns         <n>
//	    statement_timeout <duration>
//	    skip_migrate
//	    sync_interval     <duration>
//	    max_staleness     <duration>
//	}
type PostgresStorage struct {
	// DSN is the PostgreSQL connection string, a libpq URL
	// (postgres://user:password@host:5432/db?sslmode=verify-full) or
	// key=value pairs. Use a placeholder ({env.GUEST_AUTH_DATABASE_URL},
	// {file./run/secrets/db}) so the password stays out of the config: it
	// is resolved when the store opens and never logged; logs, errors and
	// the admin API name the store as postgres://user@host:port/db.
	DSN string `json:"dsn,omitempty"`
	// MaxConns bounds this instance's connection pool (default 16).
	MaxConns int `json:"max_conns,omitempty"`
	// StatementTimeout bounds each statement, and how long a request waits
	// on the database before it is answered 503 (default 5s).
	StatementTimeout caddy.Duration `json:"statement_timeout,omitempty"`
	// SkipMigrate: do not create or migrate the schema at start; refuse to
	// start unless it is at this build's version (for deployments that run
	// `caddy guest-auth migrate` separately, with a database role that may
	// change the schema).
	SkipMigrate bool `json:"skip_migrate,omitempty"`
	// SyncInterval is how often each instance reads the change log when no
	// notification woke it (default 250ms): another instance's change (an
	// upgrade, a logout, a deletion, a revocation, a keep mark) reaches
	// this instance's identity cache within about this interval, at once
	// when the notification arrives.
	SyncInterval caddy.Duration `json:"sync_interval,omitempty"`
	// MaxStaleness bounds how long an instance trusts its identity cache
	// without a successful read of the change log (default 5s): for a cut
	// it cannot see (a connection hung without an error). A cut it sees (a
	// broken connection, a failed read: the database down) stops the cache
	// at once. Either way every request then reads its identity from the
	// database until the log is read again, so during an outage requests
	// that need an identity get 503 with Retry-After, cached ones included
	// (fail-safe: never a stale identity, never anonymous).
	MaxStaleness caddy.Duration `json:"max_staleness,omitempty"`

	dsn string
}

var (
	_ StorageBackend        = (*PostgresStorage)(nil)
	_ caddy.Provisioner     = (*PostgresStorage)(nil)
	_ caddy.Validator       = (*PostgresStorage)(nil)
	_ caddyfile.Unmarshaler = (*PostgresStorage)(nil)
)

// CaddyModule returns the Caddy module information.
func (PostgresStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: storageNamespace + "." + postgres.Kind, New: func() caddy.Module { return new(PostgresStorage) }}
}

// Provision resolves the connection string.
func (p *PostgresStorage) Provision(caddy.Context) error {
	p.dsn = caddy.NewReplacer().ReplaceKnown(p.DSN, "")
	return nil
}

// Validate checks the options.
func (p *PostgresStorage) Validate() error {
	if strings.TrimSpace(p.dsn) == "" {
		return errors.New("postgres storage needs a dsn (a postgres:// URL or key=value pairs; use a placeholder such as {env.GUEST_AUTH_DATABASE_URL})")
	}
	if p.MaxConns < 0 || p.StatementTimeout < 0 || p.SyncInterval < 0 || p.MaxStaleness < 0 {
		return errors.New("postgres storage: max_conns, statement_timeout, sync_interval and max_staleness cannot be negative")
	}
	return nil
}

// StoreKey implements StorageBackend: "postgres:" and the database's
// description without the password (postgres:postgres://user@host:port/db).
// Configs naming one database with different passwords share the pool
// opened first.
func (p *PostgresStorage) StoreKey() string {
	return postgres.Kind + ":" + postgres.DescribeDSN(p.dsn)
}

// OpenStore implements StorageBackend.
func (p *PostgresStorage) OpenStore(ctx context.Context) (storage.Backend, error) {
	return postgres.Open(ctx, p.dsn, postgres.Options{
		MaxConns: p.MaxConns, StatementTimeout: time.Duration(p.StatementTimeout), SkipMigrate: p.SkipMigrate,
		SyncInterval: time.Duration(p.SyncInterval), MaxStaleness: time.Duration(p.MaxStaleness),
	})
}

// UnmarshalCaddyfile reads `postgres <dsn> [{ options }]`.
func (p *PostgresStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the kind
	if !d.AllArgs(&p.DSN) {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch opt := d.Val(); opt {
		case "max_conns":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return d.Errf("max_conns must be a positive number, not %q", v)
			}
			p.MaxConns = n
		case "statement_timeout", "sync_interval", "max_staleness":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("%s must be a positive duration, not %q", opt, v)
			}
			*map[string]*caddy.Duration{"statement_timeout": &p.StatementTimeout, "sync_interval": &p.SyncInterval, "max_staleness": &p.MaxStaleness}[opt] = caddy.Duration(dur)
		case "skip_migrate":
			if d.NextArg() {
				return d.ArgErr()
			}
			p.SkipMigrate = true
		default:
			return d.Errf("unknown postgres storage option %q", opt)
		}
	}
	return nil
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
	tokens.KeyStore
	outbox.Store
	sweepLocker

	ListUsers(ctx context.Context, after, tag string, limit int) (users []model.User, next string, err error)
	Stats(ctx context.Context) (*storage.Stats, error)
	Backup(ctx context.Context, w io.Writer, size func(n int64)) (int64, error)
	Describe() string
	Shared() bool
	Close() error
}

// Every backend is a store.
var _ store = storage.Backend(nil)

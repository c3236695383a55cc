package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
	"github.com/guestauth/caddy-guestauth/storage"
)

func init() {
	caddy.RegisterModule(Module{})
}

// Module is the store of kind `postgres` (Caddy module
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
type Module struct {
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
	_ storage.Module        = (*Module)(nil)
	_ caddy.Provisioner     = (*Module)(nil)
	_ caddy.Validator       = (*Module)(nil)
	_ caddyfile.Unmarshaler = (*Module)(nil)
)

// CaddyModule returns the Caddy module information.
func (Module) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: storage.ModuleNamespace + "." + Kind, New: func() caddy.Module { return new(Module) }}
}

// Provision resolves the connection string.
func (m *Module) Provision(caddy.Context) error {
	m.dsn = caddy.NewReplacer().ReplaceKnown(m.DSN, "")
	return nil
}

// Validate checks the options.
func (m *Module) Validate() error {
	if strings.TrimSpace(m.dsn) == "" {
		return errors.New("postgres storage needs a dsn (a postgres:// URL or key=value pairs; use a placeholder such as {env.GUEST_AUTH_DATABASE_URL})")
	}
	if m.MaxConns < 0 || m.StatementTimeout < 0 || m.SyncInterval < 0 || m.MaxStaleness < 0 {
		return errors.New("postgres storage: max_conns, statement_timeout, sync_interval and max_staleness cannot be negative")
	}
	return nil
}

// StoreKey implements storage.Module: "postgres:" and the database's
// description without the password (postgres:postgres://user@host:port/db).
// Configs naming one database with different passwords share the pool
// opened first.
func (m *Module) StoreKey() string {
	return Kind + ":" + DescribeDSN(m.dsn)
}

// OpenStore implements storage.Module.
func (m *Module) OpenStore(ctx context.Context) (storage.Backend, error) {
	return Open(ctx, m.dsn, Options{
		MaxConns: m.MaxConns, StatementTimeout: time.Duration(m.StatementTimeout), SkipMigrate: m.SkipMigrate,
		SyncInterval: time.Duration(m.SyncInterval), MaxStaleness: time.Duration(m.MaxStaleness),
	})
}

// UnmarshalCaddyfile reads `postgres <dsn> [{ options }]`.
func (m *Module) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the kind
	if !d.AllArgs(&m.DSN) {
		return d.ArgErr()
	}
	var opts caddyopt.Block // each option at most once
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "max_conns":
			err = unmarshalPositive(d, &opts, &m.MaxConns, strconv.Atoi, "number")
		case "statement_timeout":
			err = unmarshalPositive(d, &opts, &m.StatementTimeout, parseDuration, "duration")
		case "sync_interval":
			err = unmarshalPositive(d, &opts, &m.SyncInterval, parseDuration, "duration")
		case "max_staleness":
			err = unmarshalPositive(d, &opts, &m.MaxStaleness, parseDuration, "duration")
		case "skip_migrate":
			err = opts.Flag(d, &m.SkipMigrate)
		default:
			err = d.Errf("unknown postgres storage option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalPositive reads an option of one positive number or duration.
func unmarshalPositive[T int | caddy.Duration](d *caddyfile.Dispenser, opts *caddyopt.Block, v *T, parse func(string) (T, error), what string) error {
	opt := d.Val()
	var s string
	if err := opts.String(d, &s); err != nil {
		return err
	}
	x, err := parse(s)
	if err != nil || x <= 0 {
		return d.Errf("%s must be a positive %s, not %q", opt, what, s)
	}
	*v = x
	return nil
}

func parseDuration(s string) (caddy.Duration, error) {
	d, err := caddy.ParseDuration(s)
	return caddy.Duration(d), err
}

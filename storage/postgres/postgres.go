// Package postgres is a storage.Backend on PostgreSQL, for several Caddy
// instances sharing one user store. It registers the storage kind
// "postgres"; its location is a libpq connection string (a URL or
// key=value pairs), which may hold a password: it is never logged, and
// Describe and errors name the server without it.
//
// Every multi-record change is one transaction. Writes lock the user row
// first (sorted by id when several), then touch its sessions, name and
// device, then the guest counter shards (sorted): one lock order, so
// concurrent writers queue but never deadlock. Uniqueness (ids, names by
// model.NameKey, device kids, challenge hashes) is enforced by unique
// indexes, so it holds across every node.
//
// The schema is created and migrated at open, under an advisory lock (see
// Migrate). Connection failures, timeouts and server shutdowns are returned
// as model.ErrUnavailable.
package postgres

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Kind is the storage kind of this backend.
const Kind = "postgres"

// Defaults of the pool options.
const (
	// DefaultMaxConns bounds the pool of each Caddy process.
	DefaultMaxConns = 16
	// DefaultStatementTimeout bounds each statement on the server, and
	// each operation's wait in this process (plus a second), so a server
	// that stopped answering fails requests instead of hanging them.
	DefaultStatementTimeout = 5 * time.Second
	// DefaultConnectTimeout bounds a connection attempt when the
	// connection string sets none.
	DefaultConnectTimeout = 5 * time.Second
)

func init() {
	storage.Register(Kind, func(ctx context.Context, cfg storage.Config) (storage.Backend, error) {
		opt, ok := cfg.Options.(Options)
		if !ok && cfg.Options != nil {
			return nil, fmt.Errorf("postgres storage: options of type %T", cfg.Options)
		}
		return Open(ctx, cfg.Location, opt)
	})
}

// Options tune Open.
type Options struct {
	// MaxConns bounds the connection pool (DefaultMaxConns when 0; at
	// least 2).
	MaxConns int
	// StatementTimeout: see DefaultStatementTimeout (used when 0).
	StatementTimeout time.Duration
	// IdentityCacheSize bounds the identity cache (default
	// storage.DefaultIdentityCacheSize, 100 000 at about 0.9 KiB each;
	// negative disables it).
	IdentityCacheSize int
	// SkipMigrate refuses a schema other than this build's instead of
	// migrating it.
	SkipMigrate bool
	// Now stamps orphaned users (time.Now when nil).
	Now func() time.Time
	// SyncInterval is how often the change log is read when no
	// notification came (DefaultSyncInterval when 0); MaxStaleness how long
	// the identity cache is trusted without a successful read
	// (DefaultMaxStaleness when 0), when no failure said the log cannot be
	// read (then not at all). See follow.go.
	SyncInterval time.Duration
	MaxStaleness time.Duration
}

// Postgres is a storage.Backend on a PostgreSQL database.
type Postgres struct {
	pool    *pgxpool.Pool
	now     func() time.Time
	cache   *storage.IdentityCache
	desc    string
	timeout time.Duration
	follow  *follower
	origin  string // names this store's rows in the change log
}

var _ storage.Backend = (*Postgres)(nil)

// testTracer, set by the tests only, traces the pool's statements.
var testTracer pgx.QueryTracer

// poolConfig parses dsn and applies the options; errors never hold the
// connection string.
func poolConfig(dsn string, opt *Options) (*pgxpool.Config, error) {
	if strings.TrimSpace(dsn) == "" {
		return nil, errors.New("postgres storage needs a connection string (a postgres:// URL or key=value pairs)")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres storage: the connection string does not parse (%s)", redactErr(err, dsn))
	}
	if opt.MaxConns <= 0 {
		opt.MaxConns = DefaultMaxConns
	}
	if opt.StatementTimeout <= 0 {
		opt.StatementTimeout = DefaultStatementTimeout
	}
	// Two at least: the key and sweep locks hold a connection while their
	// work uses another.
	opt.MaxConns = max(opt.MaxConns, 2)
	cfg.MaxConns = int32(min(opt.MaxConns, 1<<20))
	if cfg.ConnConfig.ConnectTimeout <= 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	if _, set := cfg.ConnConfig.RuntimeParams["statement_timeout"]; !set {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(opt.StatementTimeout.Milliseconds(), 10)
	}
	if _, set := cfg.ConnConfig.RuntimeParams["application_name"]; !set {
		cfg.ConnConfig.RuntimeParams["application_name"] = "guestauth"
	}
	cfg.ConnConfig.Tracer = testTracer
	return cfg, nil
}

// Open connects to the database dsn names and, unless opt.SkipMigrate,
// brings its schema to this build's version.
func Open(ctx context.Context, dsn string, opt Options) (*Postgres, error) {
	cfg, err := poolConfig(dsn, &opt)
	if err != nil {
		return nil, err
	}
	p := &Postgres{desc: describe(cfg.ConnConfig), timeout: opt.StatementTimeout + time.Second, now: opt.Now, origin: rand.Text()}
	if p.now == nil {
		p.now = time.Now
	}
	if opt.IdentityCacheSize == 0 {
		opt.IdentityCacheSize = storage.DefaultIdentityCacheSize
	}
	p.cache = storage.NewIdentityCache(opt.IdentityCacheSize)
	p.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres storage %s: %w", p.desc, redactErr(err, dsn))
	}
	if opt.SkipMigrate {
		err = p.checkSchema(ctx)
	} else {
		_, _, err = p.migrate(ctx)
	}
	if err != nil {
		p.pool.Close()
		return nil, fmt.Errorf("postgres storage %s: %w", p.desc, redactErr(err, dsn))
	}
	if opt.SyncInterval <= 0 {
		opt.SyncInterval = DefaultSyncInterval
	}
	if opt.MaxStaleness <= 0 {
		opt.MaxStaleness = DefaultMaxStaleness
	}
	p.follow = &follower{p: p, cfg: cfg.ConnConfig, interval: opt.SyncInterval, maxStale: max(opt.MaxStaleness, opt.SyncInterval)}
	if err := p.follow.start(ctx); err != nil {
		p.pool.Close()
		return nil, fmt.Errorf("postgres storage %s: reading the change log: %w", p.desc, redactErr(classify(err), dsn))
	}
	return p, nil
}

// describe names the database without credentials:
// postgres://user@host:port/database, with the search_path when set.
func describe(c *pgx.ConnConfig) string {
	u := url.URL{Scheme: "postgres", User: url.User(c.User), Host: net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), Path: "/" + c.Database}
	if sp := c.RuntimeParams["search_path"]; sp != "" {
		u.RawQuery = url.Values{"search_path": {sp}}.Encode()
	}
	return u.String()
}

// DescribeDSN names the database dsn points to as Describe does, without
// credentials; a string that does not parse is named "(unparsable
// connection string)", never quoted.
func DescribeDSN(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(unparsable connection string)"
	}
	return describe(cfg)
}

// redactErr drops the password (and the whole connection string) from an
// error's text, should a driver message ever quote them.
func redactErr(err error, dsn string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	secrets := []string{dsn}
	if c, perr := pgconn.ParseConfig(dsn); perr == nil && c.Password != "" {
		secrets = append(secrets, c.Password, url.QueryEscape(c.Password), url.PathEscape(c.Password))
	}
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
			changed = true
		}
	}
	if !changed {
		return err
	}
	if errors.Is(err, model.ErrUnavailable) {
		return fmt.Errorf("%w: %s", model.ErrUnavailable, msg)
	}
	return errors.New(msg)
}

// Close stops following the change log and closes the pool.
func (p *Postgres) Close() error {
	if p.follow != nil && p.follow.cancel != nil {
		p.follow.stop()
	}
	p.pool.Close()
	return nil
}

// Describe implements storage.Backend: the server and database, without
// credentials.
func (p *Postgres) Describe() string { return p.desc }

// Shared implements storage.Backend: every node using the database shares
// it.
func (p *Postgres) Shared() bool { return true }

// IdentityCache implements storage.Backend.
func (p *Postgres) IdentityCache() *storage.IdentityCache { return p.cache }

// Pool is the connection pool, for tools and tests.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// ---- migrations ----

// The schema's migrations are the files migrations/NNNN_name.sql, applied in
// order, each in its own transaction that also records its version in
// guestauth_schema. A small loop rather than a migration library (goose,
// tern): it needs one table and forty lines, adds no dependency to every
// Caddy build, and does the two things this store needs that a library
// would have to be configured for anyway: it holds a PostgreSQL advisory
// lock while it runs, so nodes starting together migrate once, and it
// refuses a database migrated by a newer build instead of misreading it.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := migrationFS.ReadDir("migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		raw, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(raw)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migrations are not numbered 1..n: %s", m.name)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this build reads and writes.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic(err) // embedded at build time: a broken set fails every test
	}
	return len(ms)
}

// ErrNewerSchema is returned for a database migrated by a newer build.
var ErrNewerSchema = errors.New("the database's guestauth schema is newer than this build")

const schemaTable = `CREATE TABLE IF NOT EXISTS guestauth_schema (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

func currentVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var v int
	err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM guestauth_schema`).Scan(&v)
	return v, err
}

// migrate applies the pending migrations under an advisory lock scoped to
// the current schema, and reports the versions before and after.
func (p *Postgres) migrate(ctx context.Context) (from, to int, err error) {
	ms, err := migrations()
	if err != nil {
		return 0, 0, err
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return 0, 0, classify(err)
	}
	defer conn.Release()
	const lockKey = `hashtextextended('guestauth.migrate:' || coalesce(current_schema(), ''), 0)`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+lockKey+`)`); err != nil {
		return 0, 0, fmt.Errorf("taking the migration lock: %w", classify(err))
	}
	defer func() {
		// A lost connection drops the lock with it.
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+lockKey+`)`)
	}()
	if _, err := conn.Exec(ctx, schemaTable); err != nil {
		return 0, 0, fmt.Errorf("creating guestauth_schema: %w", classify(err))
	}
	from, err = currentVersion(ctx, conn)
	if err != nil {
		return 0, 0, classify(err)
	}
	if from > len(ms) {
		return from, from, fmt.Errorf("%w (version %d; this build knows up to %d): upgrade guestauth on this node", ErrNewerSchema, from, len(ms))
	}
	for _, m := range ms[from:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO guestauth_schema (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return from, m.version - 1, fmt.Errorf("migration %s: %w", m.name, classify(err))
		}
	}
	return from, len(ms), nil
}

// checkSchema refuses a database whose schema is not this build's.
func (p *Postgres) checkSchema(ctx context.Context) error {
	var exists bool
	if err := p.pool.QueryRow(ctx, `SELECT to_regclass('guestauth_schema') IS NOT NULL`).Scan(&exists); err != nil {
		return classify(err)
	}
	v := 0
	if exists {
		var err error
		if v, err = currentVersion(ctx, p.pool); err != nil {
			return classify(err)
		}
	}
	switch want := SchemaVersion(); {
	case v > want:
		return fmt.Errorf("%w (version %d; this build knows up to %d): upgrade guestauth on this node", ErrNewerSchema, v, want)
	case v < want:
		return fmt.Errorf("the database's guestauth schema is at version %d, this build needs %d: run `caddy guest-auth migrate` (skip_migrate is set)", v, want)
	}
	return nil
}

// Migrate brings the schema of the database dsn names to this build's
// version, as Open does, and reports the versions before and after. It is
// what `caddy guest-auth migrate` runs.
func Migrate(ctx context.Context, dsn string) (from, to int, err error) {
	opt := Options{MaxConns: 2}
	cfg, err := poolConfig(dsn, &opt)
	if err != nil {
		return 0, 0, err
	}
	desc := describe(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres %s: %w", desc, redactErr(err, dsn))
	}
	defer pool.Close()
	p := &Postgres{pool: pool, desc: desc}
	from, to, err = p.migrate(ctx)
	if err != nil {
		return from, to, fmt.Errorf("postgres %s: %w", desc, redactErr(err, dsn))
	}
	return from, to, nil
}

// ---- errors ----

// userError carries an error returned by a caller's function (an update
// function, a predicate) through a transaction unchanged.
type userError struct{ err error }

func (e userError) Error() string { return e.err.Error() }
func (e userError) Unwrap() error { return e.err }

// invalid is an error of the caller's input, found before any query.
type invalid string

func (e invalid) Error() string { return string(e) }

// classify turns a driver error into the storage contract's: a unique
// violation into ErrExists or ErrNameTaken, a lost or refused connection,
// a timeout or a server shutting down into ErrUnavailable. The caller's own
// errors and context errors pass unchanged.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var ue userError
	if errors.As(err, &ue) {
		return ue.err
	}
	var inv invalid
	switch {
	case errors.As(err, &inv),
		errors.Is(err, model.ErrNotFound), errors.Is(err, model.ErrExists),
		errors.Is(err, model.ErrNameTaken), errors.Is(err, model.ErrEmailTaken), errors.Is(err, model.ErrUnavailable),
		errors.Is(err, ErrNewerSchema):
		return err
	case errors.Is(err, context.Canceled):
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505" && pgErr.ConstraintName == "guestauth_users_name_key":
			return model.ErrNameTaken
		case pgErr.Code == "23505" && pgErr.ConstraintName == "guestauth_users_email_key":
			return model.ErrEmailTaken
		case pgErr.Code == "23505":
			return fmt.Errorf("%s: %w", strings.TrimPrefix(pgErr.ConstraintName, "guestauth_"), model.ErrExists)
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"), // insufficient resources (too many connections, ...)
			strings.HasPrefix(pgErr.Code, "57"), // operator intervention: shutdown, statement timeout, ...
			pgErr.Code == "40001", pgErr.Code == "40P01":
			return fmt.Errorf("%w: postgres: %s (SQLSTATE %s)", model.ErrUnavailable, pgErr.Message, pgErr.Code)
		}
		return fmt.Errorf("postgres: %s (SQLSTATE %s)", pgErr.Message, pgErr.Code)
	}
	// Anything else from the driver is about reaching the server: a refused
	// or dropped connection, a deadline, a closed pool.
	return fmt.Errorf("%w: postgres: %v", model.ErrUnavailable, err)
}

// op bounds one operation (see DefaultStatementTimeout).
func (p *Postgres) op(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if err := storage.CtxErr(ctx); err != nil {
		return nil, nil, err
	}
	c, cancel := context.WithTimeout(ctx, p.timeout)
	return c, cancel, nil
}

// opErr classifies err; a deadline of op's own (not the caller's) means
// the server did not answer in time.
func opErr(caller context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.DeadlineExceeded) && caller.Err() == nil {
		return fmt.Errorf("%w: postgres did not answer in time", model.ErrUnavailable)
	}
	if caller.Err() != nil && !errors.As(err, new(userError)) {
		return caller.Err()
	}
	return classify(err)
}

package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
	"github.com/guestauth/caddy-guestauth/storage/storagetest"
)

var bg = context.Background()

func open(t *testing.T, dsn string, opt postgres.Options) *postgres.Postgres {
	t.Helper()
	p, err := postgres.Open(bg, dsn, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestConformance(t *testing.T) {
	pgtest.ServerDSN(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return open(t, pgtest.DSN(t), postgres.Options{})
	})
}

// Nodes starting together migrate once, under the advisory lock; a later
// open finds the schema current.
func TestMigrateConcurrentlyOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			p, err := postgres.Open(bg, dsn, postgres.Options{MaxConns: 2})
			if err == nil {
				p.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent open: %v", err)
		}
	}
	p := open(t, dsn, postgres.Options{})
	var n, v int
	if err := p.Pool().QueryRow(bg, `SELECT count(*), max(version) FROM guestauth_schema`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != postgres.SchemaVersion() || v != postgres.SchemaVersion() {
		t.Fatalf("guestauth_schema has %d rows up to %d; want %d", n, v, postgres.SchemaVersion())
	}
	from, to, err := postgres.Migrate(bg, dsn)
	if err != nil || from != to || to != postgres.SchemaVersion() {
		t.Fatalf("Migrate on a current schema: %d -> %d, %v", from, to, err)
	}
}

// A database migrated by a newer build is refused, with and without
// skip_migrate; skip_migrate refuses an unmigrated one and accepts a
// current one.
func TestSchemaVersionChecks(t *testing.T) {
	dsn := pgtest.DSN(t)
	if _, err := postgres.Open(bg, dsn, postgres.Options{SkipMigrate: true}); err == nil || !strings.Contains(err.Error(), "guest-auth migrate") {
		t.Fatalf("skip_migrate on an empty schema: %v", err)
	}
	from, to, err := postgres.Migrate(bg, dsn)
	if err != nil || from != 0 || to != postgres.SchemaVersion() {
		t.Fatalf("Migrate: %d -> %d, %v", from, to, err)
	}
	p := open(t, dsn, postgres.Options{SkipMigrate: true})
	if _, err := p.Pool().Exec(bg, `INSERT INTO guestauth_schema (version, name) VALUES ($1, 'from the future')`, postgres.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	for _, skip := range []bool{false, true} {
		_, err := postgres.Open(bg, dsn, postgres.Options{SkipMigrate: skip})
		if !errors.Is(err, postgres.ErrNewerSchema) {
			t.Fatalf("newer schema (skip_migrate %v): err = %v, want ErrNewerSchema", skip, err)
		}
	}
}

// The password never shows in Describe or in errors.
func TestPasswordNeverShown(t *testing.T) {
	const secret = "s3cr3t-Pa55"
	dsn := "postgres://guestauth:" + secret + "@127.0.0.1:1/db?sslmode=disable&connect_timeout=2"
	_, err := postgres.Open(bg, dsn, postgres.Options{})
	if err == nil {
		t.Fatal("opened a server on port 1")
	}
	if strings.Contains(err.Error(), secret) {
		t.Fatalf("the error shows the password: %v", err)
	}
	if !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("an unreachable server: err = %v, want ErrUnavailable", err)
	}
	_, err = postgres.Open(bg, "postgres://guestauth:"+secret+"@127.0.0.1:notaport/db", postgres.Options{})
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("a bad connection string: %v", err)
	}
	ok := pgtest.DSN(t)
	u, _ := url.Parse(ok)
	u.User = url.UserPassword(u.User.Username(), secret) // trust auth ignores it
	p := open(t, u.String(), postgres.Options{})
	if d := p.Describe(); strings.Contains(d, secret) || !strings.HasPrefix(d, "postgres://"+u.User.Username()+"@") {
		t.Fatalf("Describe = %q", d)
	}
}

// A store whose server went away answers ErrUnavailable, never hangs, and
// works again once the server is back (here: the pool's connections are
// killed, as a restart would).
func TestUnavailableAndRecovery(t *testing.T) {
	dsn := pgtest.DSN(t)
	p := open(t, dsn, postgres.Options{})
	mustCreate(t, p, "u1")
	admin := open(t, dsn, postgres.Options{})
	if _, err := admin.Pool().Exec(bg, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE application_name = $1 AND pid <> pg_backend_pid()`, pgtest.AppName(t, dsn)); err != nil {
		t.Fatal(err)
	}
	// The pool drops dead connections and makes new ones.
	var err error
	for range 3 {
		if _, err = p.GetUser(bg, "u1"); err == nil {
			break
		}
		if !errors.Is(err, model.ErrUnavailable) {
			t.Fatalf("after the connections were killed: err = %v, want ErrUnavailable or success", err)
		}
	}
	if err != nil {
		t.Fatalf("no recovery: %v", err)
	}
	p.Close()
	if _, err := p.GetUser(bg, "u1"); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("closed pool: err = %v, want ErrUnavailable", err)
	}
}

func mustCreate(t *testing.T, st storage.Backend, id string) {
	t.Helper()
	if err := st.CreateUser(bg, storagetest.NewUser(id, "guest_"+id), storagetest.NewSession("s"+id, id), nil, nil); err != nil {
		t.Fatal(err)
	}
}

// Two stores on one database (two nodes): a name is unique across them,
// and of concurrent claims on both exactly one wins.
func TestTwoNodesOneName(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	mustCreate(t, a, "ua")
	mustCreate(t, b, "ub")
	for round := range 10 {
		name := fmt.Sprintf("Name%d", round)
		errs := make(chan error, 2)
		for _, st := range []storage.Backend{a, b} {
			id := map[storage.Backend]string{a: "ua", b: "ub"}[st]
			go func() {
				_, err := st.UpdateUser(bg, id, func(u *model.User) error { u.Name = name; return nil }, nil)
				errs <- err
			}()
		}
		e1, e2 := <-errs, <-errs
		won := 0
		for _, err := range []error{e1, e2} {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, model.ErrNameTaken):
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d winners (%v, %v)", round, won, e1, e2)
		}
		// Give the name back for the next round.
		for _, st := range []storage.Backend{a, b} {
			id := map[storage.Backend]string{a: "ua", b: "ub"}[st]
			if _, err := st.UpdateUser(bg, id, func(u *model.User) error { u.Name = "guest_" + id; return nil }, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if u, err := b.GetUserByName(bg, "guest_ua"); err != nil || u.ID != "ua" {
		t.Fatalf("node b reads node a's user: %+v, %v", u, err)
	}
}

// Nodes starting together on one database make one signing key; a key
// rotated on one verifies on the other.
func TestSigningKeysOncePerCluster(t *testing.T) {
	dsn := pgtest.DSN(t)
	var nodes []*tokens.Keyring
	for range 4 {
		k, err := tokens.LoadKeyring(bg, open(t, dsn, postgres.Options{MaxConns: 3}))
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, k)
	}
	var wg sync.WaitGroup
	for _, k := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := k.EnsureSigner(bg, jwa.ES256); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	st := open(t, dsn, postgres.Options{})
	keys, err := st.SigningKeys(bg)
	if err != nil || len(keys) != 1 {
		t.Fatalf("%d keys for 4 nodes starting together (%v), want 1", len(keys), err)
	}
	for _, k := range nodes {
		if k.SignerKID(jwa.ES256) != keys[0].KID {
			t.Fatal("a node signs with a key other than the stored one")
		}
	}
}

// A sweep runs on one node at a time.
func TestSweepLockOneNodeAtATime(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	ran, err := a.TryLockSweep(bg, "guests", func(context.Context) error {
		ran, err := b.TryLockSweep(bg, "guests", func(context.Context) error { return nil })
		if ran || err != nil {
			return fmt.Errorf("b swept while a held the lock: %v, %v", ran, err)
		}
		if ran, err := b.TryLockSweep(bg, "other", func(context.Context) error { return nil }); !ran || err != nil {
			return fmt.Errorf("another sweep's lock: %v, %v", ran, err)
		}
		return nil
	})
	if !ran || err != nil {
		t.Fatalf("a: %v, %v", ran, err)
	}
	if ran, err := b.TryLockSweep(bg, "guests", func(context.Context) error { return nil }); !ran || err != nil {
		t.Fatalf("b after a released: %v, %v", ran, err)
	}
}

// Sweeping ended sessions while the owner's other session is refreshed
// never deadlocks (one lock order: the user, then its sessions).
func TestSweepAlongsideRefreshes(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	mustCreate(t, a, "u1")
	for i := range 200 {
		s := storagetest.NewSession(fmt.Sprintf("old%03d", i), "u1")
		s.IdleExpiresAt = storagetest.T0.Add(time.Minute)
		if err := a.PutSession(bg, s); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for _, st := range []*postgres.Postgres{a, b} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 40 {
				if _, err := st.DeleteEndedSessions(bg, storagetest.T0.Add(2*time.Minute), 3); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range 40 {
				if _, err := st.UpdateSession(bg, "su1", func(s *model.Session) error { s.Generation++; return nil }, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

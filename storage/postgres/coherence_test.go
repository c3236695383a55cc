package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// eventually waits (up to 15s, far above the default bound of 1s) until
// cond holds; the test asserts convergence, not its speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never converged: %s", what)
}

// waitPolls waits until b's follower has read the log twice more.
func waitPolls(t *testing.T, b *postgres.Postgres) {
	t.Helper()
	n := postgres.Polls(b)
	eventually(t, "two more reads of the change log", func() bool { return postgres.Polls(b) >= n+2 })
}

func identity(t *testing.T, st storage.Backend, uid, sid string) (*model.User, *model.Session, error) {
	t.Helper()
	return st.Identity(bg, uid, sid)
}

// cachedPair caches an identity on b once b has read the earlier changes.
func cachedPair(t *testing.T, b *postgres.Postgres, uid, sid string) *model.User {
	t.Helper()
	waitPolls(t, b)
	st := b
	u1, _, err := identity(t, st, uid, sid)
	if err != nil {
		t.Fatal(err)
	}
	if u2, _, _ := identity(t, st, uid, sid); u2 != u1 {
		t.Fatal("the identity was not cached")
	}
	return u1
}

// A change on node A reaches node B's cache; an activity flush does not
// invalidate it.
func TestCoherenceAcrossNodes(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	mustCreate(t, a, "u1")
	cached := cachedPair(t, b, "u1", "su1")

	if _, err := a.TouchUsers(bg, map[string]time.Time{"u1": time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitPolls(t, b)
	if u, _, _ := identity(t, b, "u1", "su1"); u != cached {
		t.Fatal("an activity flush on A dropped B's cached identity")
	}

	if _, err := a.UpdateUser(bg, "u1", func(u *model.User) error { u.Tag = model.TagNormal; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an upgrade on A shows on B", func() bool {
		u, _, err := identity(t, b, "u1", "su1")
		return err == nil && u.Tag == model.TagNormal
	})
	cachedPair(t, b, "u1", "su1")
	if err := a.DeleteSession(bg, "su1", nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a logout on A is refused on B", func() bool {
		_, _, err := identity(t, b, "u1", "su1")
		return errors.Is(err, model.ErrNotFound)
	})
}

// A transaction that commits after a later one, and after B read the log
// past that later one, still reaches B: the log is read by transaction id,
// not by sequence number.
func TestCoherenceLateCommit(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	mustCreate(t, a, "u1")
	mustCreate(t, a, "u2")
	cachedPair(t, b, "u1", "su1")
	cachedPair(t, b, "u2", "su2")

	conn, err := pgx.Connect(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	// As a node's write does: the record, then its change row (seq n).
	if _, err := tx.Exec(bg, `UPDATE guestauth_users SET data = jsonb_set(data, '{display_name}', '"late"') WHERE id = 'u1'`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(bg, `INSERT INTO guestauth_changes (users, sessions) VALUES ('{u1}', '{}')`); err != nil {
		t.Fatal(err)
	}
	// A later write (seq n+1) commits first, and B reads past it.
	if _, err := a.UpdateUser(bg, "u2", func(u *model.User) error { u.DisplayName = "early"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the early write shows on B", func() bool {
		u, _, _ := identity(t, b, "u2", "su2")
		return u != nil && u.DisplayName == "early"
	})
	waitPolls(t, b)
	if err := tx.Commit(bg); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the late commit shows on B", func() bool {
		u, _, _ := identity(t, b, "u1", "su1")
		return u != nil && u.DisplayName == "late"
	})
}

// The follower's connection killed (pg_terminate_backend): notifications
// are lost until it reconnects, and the node still converges.
func TestCoherenceListenerKilled(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	mustCreate(t, a, "u1")
	cachedPair(t, b, "u1", "su1")
	var killed int
	if err := a.Pool().QueryRow(bg, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND query LIKE '%guestauth_changes c%' AND pid <> pg_backend_pid()`, pgtest.AppName(t, dsn)).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("killed %d listener connections: %v", killed, err)
	}
	if _, err := a.UpdateUser(bg, "u1", func(u *model.User) error { u.DisplayName = "after"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a change after the listener was killed shows on B", func() bool {
		u, _, _ := identity(t, b, "u1", "su1")
		return u != nil && u.DisplayName == "after"
	})
}

// A node that cannot read the log for max_staleness stops serving its
// cache and reads every identity through.
func TestCoherenceMaxStaleness(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := open(t, dsn, postgres.Options{})
	b := open(t, dsn, postgres.Options{SyncInterval: 50 * time.Millisecond, MaxStaleness: 200 * time.Millisecond})
	mustCreate(t, a, "u1")
	cachedPair(t, b, "u1", "su1")
	postgres.StopFollowing(b)
	time.Sleep(300 * time.Millisecond) // past max_staleness with no read of the log
	if _, err := a.UpdateUser(bg, "u1", func(u *model.User) error { u.DisplayName = "fresh"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if u, _, err := identity(t, b, "u1", "su1"); err != nil || u.DisplayName != "fresh" {
		t.Fatalf("a node cut off from the log served its cache: %+v, %v", u, err)
	}
}

// A creation publishes nothing to the change log (see CreateUser): a node
// that looked the new identity up before, and found nothing, finds it right
// after, as it caches only what it found.
func TestCreationSeenAtOnceWithoutChangeLog(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	postgres.StopFollowing(b) // b hears of no change: it must not need to
	if _, _, err := identity(t, b, "u1", "su1"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("before the creation: %v", err)
	}
	mustCreate(t, a, "u1")
	if u, s, err := identity(t, b, "u1", "su1"); err != nil || u.ID != "u1" || s.ID != "su1" {
		t.Fatalf("after the creation: %v, %v, %v", u, s, err)
	}
	conn, err := pgx.Connect(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(bg)
	var n int
	if err := conn.QueryRow(bg, `SELECT count(*) FROM guestauth_changes WHERE 'u1' = ANY(users)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("change log rows of the creation: %d, %v", n, err)
	}
}

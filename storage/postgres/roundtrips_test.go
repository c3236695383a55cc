package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
	"github.com/guestauth/caddy-guestauth/storage/storagetest"
)

// tally counts the round trips (a statement alone, or a batch) and the
// statements of the calls whose context carries it.
type tally struct {
	mu    sync.Mutex
	trips int
	sql   []string
}

type tallyKey struct{}

func tallyOf(ctx context.Context) *tally {
	c, _ := ctx.Value(tallyKey{}).(*tally)
	return c
}

func (c *tally) add(trips int, sql string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trips += trips
	if sql != "" {
		c.sql = append(c.sql, sql)
	}
}

type tracer struct{}

func (tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	tallyOf(ctx).add(1, d.SQL)
	return ctx
}
func (tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	tallyOf(ctx).add(1, "")
	return ctx
}
func (tracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	tallyOf(ctx).add(0, d.SQL)
}
func (tracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// The round trips and statements of a guest creation (the shared global
// limit, then the user with its session) and of a refresh (UpdateSession):
// each round trip is a wait for the server, each statement server CPU, and
// both backends share the machine (issue 10's performance aim).
func TestGuestCreationRoundTrips(t *testing.T) {
	dsn := pgtest.DSN(t)
	postgres.SetTracer(tracer{})
	p := open(t, dsn, postgres.Options{})
	postgres.SetTracer(nil)
	count := func(name string, trips, stmts int, f func(ctx context.Context) error) []string {
		t.Helper()
		c := &tally{}
		if err := f(context.WithValue(bg, tallyKey{}, c)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.trips != trips || len(c.sql) != stmts {
			t.Errorf("%s: %d round trips, %d statements, want %d and %d:\n%s", name, c.trips, len(c.sql), trips, stmts, fmt.Sprintf("%q", c.sql))
		}
		return c.sql
	}
	// The wake-up of the other nodes comes after COMMIT, outside the
	// transaction: a transaction that notifies holds the notify lock until
	// its commit is flushed, serializing every write on the previous one's.
	notifiesAfterCommit := func(name string, sql []string) {
		t.Helper()
		n := len(sql)
		if n < 2 || sql[n-2] != "COMMIT" || !strings.Contains(sql[n-1], "pg_notify") {
			t.Errorf("%s: want COMMIT then pg_notify last, got %q", name, sql)
		}
	}
	now := time.Now()
	for i := range 2 { // the second time, with the statements prepared
		// A batch: set synchronous_commit, purge, take.
		count("LimitTake", 1, 3, func(ctx context.Context) error {
			wait, err := p.LimitTake(ctx, "guest-global", "", 1000, time.Millisecond, now)
			if err == nil && wait != 0 {
				err = fmt.Errorf("refused, wait %v", wait)
			}
			return err
		})
		id := fmt.Sprint("g", i)
		// BEGIN; a batch: user, session, guest counter, idle-hour
		// histogram, COMMIT. No change log entry nor wake-up: no node can
		// have cached what is new.
		count("CreateUser", 2, 6, func(ctx context.Context) error {
			return p.CreateUser(ctx, storagetest.NewUser(id, "guest_"+id), storagetest.NewSession("s"+id, id), nil, nil)
		})
		// BEGIN; a batch: lock the owner, read the session; a batch:
		// session, change log, COMMIT, pg_notify.
		notifiesAfterCommit("UpdateSession", count("UpdateSession", 3, 7, func(ctx context.Context) error {
			_, err := p.UpdateSession(ctx, "s"+id, func(s *model.Session) error {
				s.Generation++
				return nil
			}, nil)
			return err
		}))
	}
	if live, _, err := p.GuestCounts(bg); err != nil || live != 2 {
		t.Errorf("GuestCounts: %d live, %v; want 2", live, err)
	}
}

// CreateUser's batch inserts the first session without ON CONFLICT: a
// session id another user holds is refused as "a session's user cannot
// change" (not a duplicate user), and nothing of the new user is stored.
func TestCreateUserSessionOfAnotherUser(t *testing.T) {
	p := open(t, pgtest.DSN(t), postgres.Options{})
	if err := p.CreateUser(bg, storagetest.NewUser("u1", "one"), storagetest.NewSession("s1", "u1"), nil, nil); err != nil {
		t.Fatal(err)
	}
	err := p.CreateUser(bg, storagetest.NewUser("u2", "two"), storagetest.NewSession("s1", "u2"), nil, nil)
	if err == nil || errors.Is(err, model.ErrExists) || !strings.Contains(err.Error(), "a session's user cannot change") {
		t.Fatalf("CreateUser with another user's session id: %v", err)
	}
	if _, err := p.GetUser(bg, "u2"); !errors.Is(err, model.ErrNotFound) {
		t.Errorf("the refused user was stored: %v", err)
	}
	if s, err := p.GetSession(bg, "s1"); err != nil || s.UserID != "u1" {
		t.Errorf("session s1: %+v, %v", s, err)
	}
	if live, _, err := p.GuestCounts(bg); err != nil || live != 1 {
		t.Errorf("GuestCounts: %d live, %v; want 1", live, err)
	}
}

// COMMIT, sent in a batch rather than by pgx's Tx.Commit, still reports a
// transaction an earlier error aborted (the server answers ROLLBACK).
func TestWriteReportsAbortedCommit(t *testing.T) {
	p := open(t, pgtest.DSN(t), postgres.Options{})
	if err := postgres.WriteIgnoringAnError(p); err == nil {
		t.Fatal("a write whose transaction was aborted reported success")
	}
}

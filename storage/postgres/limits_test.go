package postgres_test

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// Two stores on one schema are two nodes: a burst of 5 holds across both,
// refills at the interval, and a reset on one is seen by the other.
func TestSharedLimitAcrossNodes(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})
	now := time.Unix(1_800_000_000, 0)
	const burst, iv = 5, time.Minute
	for i := range burst {
		node := []*postgres.Postgres{a, b}[i%2]
		if w, err := node.LimitTake(bg, "signin_account", "acct:bob", burst, iv, now); err != nil || w != 0 {
			t.Fatalf("try %d: wait %v, %v", i+1, w, err)
		}
	}
	for _, node := range []*postgres.Postgres{a, b} {
		w, err := node.LimitTake(bg, "signin_account", "acct:bob", burst, iv, now)
		if err != nil || w != iv {
			t.Fatalf("over the burst: wait %v, %v; want %v", w, err, iv)
		}
	}
	// Other keys and other limits are separate buckets.
	if w, err := b.LimitTake(bg, "signin_account", "acct:eve", burst, iv, now); err != nil || w != 0 {
		t.Fatalf("another key: wait %v, %v", w, err)
	}
	if w, err := b.LimitTake(bg, "signin_hash", "acct:bob", burst, iv, now); err != nil || w != 0 {
		t.Fatalf("another limit: wait %v, %v", w, err)
	}
	// One interval later, one more try (on either node), not two.
	later := now.Add(iv)
	if w, err := b.LimitTake(bg, "signin_account", "acct:bob", burst, iv, later); err != nil || w != 0 {
		t.Fatalf("after an interval: wait %v, %v", w, err)
	}
	if w, _ := a.LimitTake(bg, "signin_account", "acct:bob", burst, iv, later); w != iv {
		t.Fatalf("second try after an interval: wait %v", w)
	}
	// A refund gives one try back.
	if err := a.LimitRefund(bg, "signin_account", "acct:bob", iv); err != nil {
		t.Fatal(err)
	}
	if w, err := b.LimitTake(bg, "signin_account", "acct:bob", burst, iv, later); err != nil || w != 0 {
		t.Fatalf("after a refund: wait %v, %v", w, err)
	}
	if err := a.LimitReset(bg, "signin_account", "acct:bob"); err != nil {
		t.Fatal(err)
	}
	for i := range burst {
		if w, err := b.LimitTake(bg, "signin_account", "acct:bob", burst, iv, later); err != nil || w != 0 {
			t.Fatalf("after a reset, try %d: wait %v, %v", i+1, w, err)
		}
	}
}

// Concurrent takes from two nodes never exceed the burst.
func TestSharedLimitConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	nodes := []*postgres.Postgres{open(t, dsn, postgres.Options{}), open(t, dsn, postgres.Options{})}
	now := time.Unix(1_800_000_000, 0)
	const burst = 5
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			w, err := nodes[i%2].LimitTake(bg, "signin_account", "acct:bob", burst, time.Hour, now)
			if err != nil {
				t.Error(err)
			}
			if w == 0 {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != burst {
		t.Fatalf("%d of 40 concurrent tries allowed; want %d", n, burst)
	}
}

// Rows whose bucket has refilled are deleted as later tries come in.
func TestSharedLimitPurge(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := open(t, dsn, postgres.Options{})
	now := time.Unix(1_800_000_000, 0)
	for i := range 10 {
		if _, err := a.LimitTake(bg, "guest_global", string(rune('a'+i)), 2, time.Second, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.LimitTake(bg, "guest_global", "z", 2, time.Second, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := a.Pool().QueryRow(bg, `SELECT count(*) FROM guestauth_limits`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("%d rows left; want 1 (the expired ones deleted)", n)
	}
}

// A row whose bucket refilled only just now is kept: the purge would
// otherwise delete the hot global guest rate row between takes, and the next
// take insert it again.
func TestSharedLimitPurgeSparesRecentRows(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := open(t, dsn, postgres.Options{})
	now := time.Unix(1_800_000_000, 0)
	if _, err := a.LimitTake(bg, "guest_global", "", 2, time.Second, now); err != nil {
		t.Fatal(err)
	}
	// Full again since now+1s; purged only a minute after that.
	if _, err := a.LimitTake(bg, "guest_global", "other", 2, time.Second, now.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := a.Pool().QueryRow(bg, `SELECT count(*) FROM guestauth_limits`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d rows left; want 2 (a row full again for a second is kept)", n)
	}
}

// A closed store refuses with ErrUnavailable, never allows.
func TestSharedLimitUnavailable(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := open(t, dsn, postgres.Options{})
	_ = a.Close()
	w, err := a.LimitTake(bg, "signin_account", "acct:bob", 5, time.Minute, time.Now())
	if !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("wait %v, err %v; want ErrUnavailable", w, err)
	}
}

// BenchmarkSharedLimitTake: one try of a shared limit (the purge and the
// GCRA statement), on one hot key (the global guest rate) and on many.
func BenchmarkSharedLimitTake(b *testing.B) {
	dsn := pgtest.DSN(b)
	p, err := postgres.Open(bg, dsn, postgres.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	now := time.Unix(1_800_000_000, 0)
	for _, bc := range []struct {
		name string
		key  func(i int) string
	}{
		{"hot", func(int) string { return "" }},
		{"spread", func(i int) string { return "acct:" + strconv.Itoa(i) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				i++
				if _, err := p.LimitTake(bg, "bench_"+bc.name, bc.key(i), 1<<30, time.Nanosecond, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package accounts_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// Two Services drawing on the same throttles (a config reload's overlap:
// the module's pooled buckets) admit all-or-nothing together: they share
// the admission lock with the buckets, so of two attempts racing for the
// last try of an account's budget exactly one is admitted, whichever
// Service each goes through.
func TestTwoServicesShareAdmission(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 1, Interval: time.Hour}
	f := newFixture(t, cfg)
	f.member(t, "hana", "right-password")
	keys, err := tokens.LoadKeyring(bg, f.store)
	if err != nil {
		t.Fatal(err)
	}
	// The pool a caller (the Caddy module) keeps the buckets and the lock in.
	buckets := map[string]*accounts.Throttle{}
	var poolMu sync.Mutex
	cfg.Throttles = func(name string, l accounts.Limit) *accounts.Throttle {
		poolMu.Lock()
		defer poolMu.Unlock()
		if buckets[name] == nil {
			buckets[name] = accounts.NewThrottle(l, f.clock.Now)
		}
		return buckets[name]
	}
	cfg.AdmitLock = new(sync.Mutex)
	a, err := accounts.New(bg, f.store, keys, cfg, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := accounts.New(bg, f.store, keys, cfg, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	var admitted atomic.Int32
	bAdmitted := make(chan struct{}, 1)
	accounts.SetAdmitHook(b, func() {
		admitted.Add(1)
		bAdmitted <- struct{}{}
	})
	var bDone sync.WaitGroup
	first := true
	accounts.SetAdmitHook(a, func() {
		admitted.Add(1)
		if !first {
			return
		}
		first = false
		// A holds admission and has not spent the try yet: B's attempt
		// now must wait for it, not be admitted beside it.
		bDone.Go(func() { _, _ = b.PasswordSignIn(bg, issuer, "app", "hana", "wrong-password", "192.0.2.2") })
		select {
		case <-bAdmitted:
		case <-time.After(300 * time.Millisecond):
		}
	})
	_, _ = a.PasswordSignIn(bg, issuer, "app", "hana", "wrong-password", "192.0.2.1")
	bDone.Wait()
	if n := admitted.Load(); n != 1 {
		t.Fatalf("%d attempts admitted on a budget of 1", n)
	}
}

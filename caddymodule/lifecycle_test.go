package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
)

// loaded is a handler provisioned in-process as Caddy does it, with the
// config context Caddy would cancel on unloading it.
type loaded struct {
	*GuestAuth
	cancel context.CancelFunc
}

func loadHandler(t *testing.T, db string, mod func(*GuestAuth)) *loaded {
	t.Helper()
	g := &GuestAuth{
		Storage: boltStorage(db),
		Issuer:  "https://app.example.com",
		Clients: []Client{{ClientID: "app", ClientSecret: "app-secret"}},
	}
	if mod != nil {
		mod(g)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	if err := g.Provision(ctx); err != nil {
		cancel()
		_ = g.Cleanup()
		t.Fatal(err)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	return &loaded{g, cancel}
}

// unload is what Caddy does to a config it unloads: cancel its context,
// then clean up its modules.
func (l *loaded) unload(t *testing.T) {
	t.Helper()
	l.cancel()
	if err := l.Cleanup(); err != nil {
		t.Fatal(err)
	}
}

// The background goroutines (activity flusher, guest sweeper, webhook
// sender) end when the config's context is cancelled, before and without
// Cleanup; after Cleanup (which also closes the store and its sweeper)
// none is left.
func TestBackgroundEndsWithConfigContext(t *testing.T) {
	before := runtime.NumGoroutine()
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	ttl := caddy.Duration(time.Hour)
	l := loadHandler(t, filepath.Join(t.TempDir(), "g.db"), func(g *GuestAuth) {
		g.GuestTTL = &ttl
		g.Webhook = &Webhook{URL: hook.URL + "/hook", Secret: "hook-secret"}
	})
	if !l.outbox.Enqueue(events.Event{Type: events.GuestCreated}) {
		t.Fatal("the webhook refused an event before the unload")
	}
	l.cancel()
	select {
	case <-l.bg.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the flusher and sweeper went on after the config's context was cancelled")
	}
	waitFor(t, "the webhook outbox to stop", func() bool {
		return !l.outbox.Enqueue(events.Event{Type: events.GuestCreated})
	})
	if err := l.Cleanup(); err != nil {
		t.Fatal(err)
	}
	hook.Close() // and with it the client's kept-alive connection
	waitFor(t, "the goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// waitFor polls cond until it holds, failing (with every goroutine's stack)
// after a generous while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<20)
	t.Fatalf("gave up waiting for %s; goroutines:\n%s", what, buf[:runtime.Stack(buf, true)])
}

// Configs sharing the buckets (a reload's overlap: the same store and
// issuer) share the admission lock pooled with them, so admission stays
// all-or-nothing across their Services (accounts.Config.AdmitLock); a site
// with another issuer has buckets and a lock of its own.
func TestAdmissionLockPooledWithBuckets(t *testing.T) {
	db := filepath.Join(t.TempDir(), "g.db")
	old := loadHandler(t, db, nil)
	reloaded := loadHandler(t, db, nil)
	other := loadHandler(t, db, func(g *GuestAuth) { g.Issuer = "https://other.example.com" })
	if old.admission == nil || old.admission != reloaded.admission {
		t.Fatalf("a reload's configs have admission locks %p and %p, want one", old.admission, reloaded.admission)
	}
	if other.admission == old.admission {
		t.Fatal("another issuer shares the admission lock")
	}
	old.unload(t)
	if again := loadHandler(t, db, nil); again.admission != reloaded.admission {
		t.Fatal("the lock was not handed over")
	} else {
		again.unload(t)
	}
	reloaded.unload(t)
	other.unload(t)
	throttlePool.Range(func(k, _ any) bool {
		t.Errorf("pool entry %q kept with no config using it", strings.ReplaceAll(k.(string), "\x00", " "))
		return true
	})
}

// The limits' buckets survive a reload (a new config provisioned, then the
// old one unloaded): a spent budget stays spent. A changed limit starts
// afresh, and once no config uses a bucket it is dropped.
func TestThrottlesSurviveReload(t *testing.T) {
	db := filepath.Join(t.TempDir(), "g.db")
	limit := func(burst int) func(*GuestAuth) {
		return func(g *GuestAuth) { g.Limits.GuestIP = &RateLimit{Burst: burst, Interval: caddy.Duration(time.Hour)} }
	}
	create := func(l *loaded) error {
		_, err := l.svc.CreateGuest(context.Background(), l.issuer, "app", "192.0.2.1")
		return err
	}
	wantThrottled := func(err error, when string) {
		t.Helper()
		var te *accounts.ThrottledError
		if !errors.As(err, &te) || te.Limit != accounts.LimitIP {
			t.Fatalf("%s: %v, want the per-IP guest limit", when, err)
		}
	}
	old := loadHandler(t, db, limit(2))
	for range 2 {
		if err := create(old); err != nil {
			t.Fatal(err)
		}
	}
	wantThrottled(create(old), "third guest")

	reloaded := loadHandler(t, db, limit(2))
	old.unload(t)
	wantThrottled(create(reloaded), "after the reload")

	changed := loadHandler(t, db, limit(3))
	reloaded.unload(t)
	if err := create(changed); err != nil {
		t.Fatalf("with a changed limit: %v", err)
	}
	changed.unload(t)
	throttlePool.Range(func(k, _ any) bool {
		t.Errorf("bucket %q kept with no config using it", strings.ReplaceAll(k.(string), "\x00", " "))
		return true
	})
}

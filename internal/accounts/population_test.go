package accounts_test

import (
	"errors"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

func wantThrottled(t *testing.T, err error, limit string) *accounts.ThrottledError {
	t.Helper()
	var te *accounts.ThrottledError
	if !errors.As(err, &te) || te.Limit != limit || te.RetryAfter <= 0 {
		t.Fatalf("error = %v; want %q throttling", err, limit)
	}
	return te
}

func countUsers(t *testing.T, st storage.Backend) int {
	t.Helper()
	users, _, err := st.ListUsers(bg, "", "", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return len(users)
}

func TestGuestCreationLimits(t *testing.T) {
	cfg := defaultConfig()
	cfg.Guests = accounts.GuestLimits{PerIP: accounts.Limit{Burst: 2, Interval: time.Minute}, Global: accounts.Limit{Burst: 3, Interval: time.Second}, MaxLive: 4}
	cfg.LimitHits = &accounts.LimitHits{}
	f := newFixture(t, cfg)
	for range 2 {
		if _, err := f.svc.CreateGuest(bg, issuer, "app", "198.51.100.1"); err != nil {
			t.Fatal(err)
		}
	}
	te := wantThrottled(t, mustFail(f.svc.CreateGuest(bg, issuer, "app", "198.51.100.1")), accounts.LimitIP)
	if te.RetryAfter > time.Minute {
		t.Fatalf("retry after %v", te.RetryAfter)
	}
	// Another IP passes the IP limit but meets the global one (burst 3).
	if _, err := f.svc.CreateGuest(bg, issuer, "app", "198.51.100.2"); err != nil {
		t.Fatal(err)
	}
	wantThrottled(t, mustFail(f.svc.CreateGuest(bg, issuer, "app", "198.51.100.3")), accounts.LimitGlobal)
	f.clock.Advance(time.Second)
	if _, err := f.svc.CreateGuest(bg, issuer, "app", "198.51.100.3"); err != nil {
		t.Fatalf("after the global refill: %v", err)
	}
	// Four guests now live: the cap refuses the fifth whatever the rates.
	f.clock.Advance(time.Hour)
	wantThrottled(t, mustFail(f.svc.CreateGuest(bg, issuer, "app", "198.51.100.9")), accounts.LimitCap)
	if n := countUsers(t, f.store); n != 4 {
		t.Fatalf("%d users stored; refused creations must write nothing", n)
	}
	if live, _, _ := f.store.GuestCounts(bg); live != 4 {
		t.Fatalf("live guest count %d", live)
	}
	// Each refusal counted once, in this Service's (its store's) counter.
	if got := cfg.LimitHits.Take(); len(got) != 3 || got[accounts.LimitIP] != 1 || got[accounts.LimitGlobal] != 1 || got[accounts.LimitCap] != 1 {
		t.Fatalf("limit hits %v; want ip, global and cap once each", got)
	}
	if got := cfg.LimitHits.Take(); got != nil {
		t.Fatalf("taken twice: %v", got)
	}
}

// newTrackedFixture is a fixture whose service records activity.
func newTrackedFixture(t *testing.T, cfg accounts.Config) (*fixture, *accounts.Activity) {
	t.Helper()
	f := newFixture(t, cfg)
	act := accounts.NewActivity(f.store)
	cfg.Activity = act
	keys, err := tokens.LoadKeyring(bg, f.store)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := accounts.New(bg, f.store, keys, cfg, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, store: f.store, clock: f.clock}, act
}

func mustFail(_ *accounts.Issued, err error) error { return err }

func TestActivityIsCoalesced(t *testing.T) {
	f, act := newTrackedFixture(t, defaultConfig())

	g, _ := f.guest(t)
	before := f.store.Writes()
	for range 500 {
		f.clock.Advance(time.Second)
		f.authenticate(t, g.Tokens.AccessToken)
	}
	if w := f.store.Writes() - before; w != 0 {
		t.Fatalf("%d store writes for 500 authenticated requests; want none before a flush", w)
	}
	if err := act.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if w := f.store.Writes() - before; w != 1 {
		t.Fatalf("flush made %d writes; want 1", w)
	}
	u, _ := f.store.GetUser(bg, g.User.ID)
	if !u.LastActiveAt.Equal(f.clock.Now()) {
		t.Fatalf("last activity %v; want %v", u.LastActiveAt, f.clock.Now())
	}
	if err := act.Flush(bg); err != nil || f.store.Writes()-before != 1 {
		t.Fatalf("an empty flush wrote: %v", err)
	}
}

func TestPruneSparesActiveKeptAndUpgraded(t *testing.T) {
	cfg := defaultConfig()
	cfg.SessionLifetime = 90 * 24 * time.Hour // idle 24h
	f, act := newTrackedFixture(t, cfg)

	idle, _ := f.guest(t)
	kept, _ := f.guest(t)
	upgraded, upID := f.guest(t)
	active, _ := f.guest(t)
	if _, err := f.store.UpdateUser(bg, kept.User.ID, func(u *model.User) error { u.Kept = true; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	// An upgrade with a password (a name alone expires: see
	// TestPasswordlessNormalUserExpiresLikeGuest).
	if _, err := f.svc.UpdateProfile(bg, upID, accounts.ProfileUpdate{Name: ptr("henry"), Password: ptr("henry-password")}); err != nil {
		t.Fatal(err)
	}
	// 40 days pass; "active" refreshes its session every 20 hours.
	rt := active.Tokens.RefreshToken
	for range 48 {
		f.clock.Advance(20 * time.Hour)
		r, err := f.svc.Refresh(bg, issuer, "app", rt)
		if err != nil {
			t.Fatal(err)
		}
		rt = r.Tokens.RefreshToken
	}
	if err := act.Flush(bg); err != nil {
		t.Fatal(err)
	}
	opt := accounts.PruneOptions{IdleTTL: 30 * 24 * time.Hour, Batch: 1, MaxListed: 10}

	dry, err := accounts.Prune(bg, f.store, f.clock.Now(), accounts.PruneOptions{IdleTTL: opt.IdleTTL, DryRun: true, MaxListed: 10}, nil)
	if err != nil || dry.Count != 1 || dry.Users[0].UserID != idle.User.ID || dry.Users[0].Reason != accounts.PruneIdle {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if _, err := f.store.GetUser(bg, idle.User.ID); err != nil {
		t.Fatal("dry run deleted a user")
	}

	var deleted []string
	rep, err := accounts.Prune(bg, f.store, f.clock.Now(), opt, func(p accounts.Pruned) { deleted = append(deleted, p.UserID) })
	if err != nil || rep.Count != 1 || len(deleted) != 1 || deleted[0] != idle.User.ID {
		t.Fatalf("prune: %+v %v %v", rep, deleted, err)
	}
	if _, err := f.store.GetUser(bg, idle.User.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatal("idle guest survived")
	}
	if _, err := f.store.GetSession(bg, idle.Session.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatal("idle guest's session survived")
	}
	for _, id := range []string{kept.User.ID, upgraded.User.ID, active.User.ID} {
		if _, err := f.store.GetUser(bg, id); err != nil {
			t.Fatalf("user %s was pruned: %v", id, err)
		}
	}
	if live, keptN, _ := f.store.GuestCounts(bg); live != 2 || keptN != 1 {
		t.Fatalf("counts after prune: live %d kept %d", live, keptN)
	}
}

func TestPruneDeletesOrphansButNotDeviceGuests(t *testing.T) {
	f := newFixture(t, defaultConfig())
	web, _ := f.guest(t)
	keep, _ := f.guest(t)
	if err := f.store.DeleteSession(bg, web.Session.ID, nil); err != nil { // its only session: orphaned
		t.Fatal(err)
	}
	if u, _ := f.store.GetUser(bg, web.User.ID); u.OrphanedAt.IsZero() {
		t.Fatal("guest without sessions not marked orphaned")
	}
	rep, err := accounts.Prune(bg, f.store, f.clock.Now(), accounts.PruneOptions{IdleTTL: 30 * 24 * time.Hour, MaxListed: 10}, nil)
	if err != nil || rep.Count != 1 || rep.Users[0].UserID != web.User.ID || rep.Users[0].Reason != accounts.PruneOrphan {
		t.Fatalf("prune: %+v %v", rep, err)
	}
	if _, err := f.store.GetUser(bg, keep.User.ID); err != nil {
		t.Fatal("a guest with a live session was pruned")
	}
}

// A dry run writes nothing, not even the activity flush a real run starts
// with, yet judges recorded activity as a flush would.
func TestPruneDryRunReadsPendingActivity(t *testing.T) {
	cfg := defaultConfig()
	cfg.SessionLifetime = 90 * 24 * time.Hour
	f, act := newTrackedFixture(t, cfg)
	idle, _ := f.guest(t)
	active, _ := f.guest(t)
	f.clock.Advance(40 * 24 * time.Hour)
	act.Touch(active.User.ID, f.clock.Now()) // as a proxied request records it
	before := f.store.Writes()
	dry, err := accounts.Prune(bg, f.store, f.clock.Now(), accounts.PruneOptions{IdleTTL: 30 * 24 * time.Hour, DryRun: true, MaxListed: 10, Activity: act}, nil)
	if err != nil || dry.Count != 1 || dry.Users[0].UserID != idle.User.ID {
		t.Fatalf("dry run: %+v %v (the active guest's activity is not written yet)", dry, err)
	}
	if w := f.store.Writes() - before; w != 0 {
		t.Fatalf("a dry run made %d writes", w)
	}
}

package accounts_test

import (
	"slices"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// TestThrottlesFromConfig: a Service takes every throttle from
// Config.Throttles, so throttles kept by the caller carry their state into
// a new Service (a config reload).
func TestThrottlesFromConfig(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 2, Interval: time.Hour}
	f := newFixture(t, cfg)
	keys, err := tokens.LoadKeyring(bg, f.store)
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]*accounts.Throttle{}
	var names []string
	cfg.Throttles = func(name string, l accounts.Limit) *accounts.Throttle {
		names = append(names, name)
		if kept[name] == nil {
			kept[name] = accounts.NewThrottle(l, f.clock.Now)
		}
		return kept[name]
	}
	first, err := accounts.New(bg, f.store, keys, cfg, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	want := []string{
		accounts.ThrottleChallengeGlobal, accounts.ThrottleChallengeIP, accounts.ThrottleGuestGlobal, accounts.ThrottleGuestIP,
		accounts.ThrottleMailAddress, accounts.ThrottleMailIP, accounts.ThrottleNameIP, accounts.ThrottleNameUser, accounts.ThrottleSignInAccount, accounts.ThrottleSignInDevice,
		accounts.ThrottleSignInHash, accounts.ThrottleSignInIP,
	}
	if !slices.Equal(names, want) {
		t.Fatalf("throttles asked for: %v, want %v", names, want)
	}
	f.member(t, "gail", "right-password")
	f.svc = first
	for range 2 {
		wantCode(t, f.trySignIn("gail", "wrong-password", "192.0.2.1", ""), accounts.CodeInvalidGrant)
	}
	wantThrottled(t, f.trySignIn("gail", "right-password", "192.0.2.1", ""), accounts.LimitSignIn)

	// A second Service given the same throttles: still locked.
	f.svc, err = accounts.New(bg, f.store, keys, cfg, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	wantThrottled(t, f.trySignIn("gail", "right-password", "192.0.2.1", ""), accounts.LimitSignIn)

	// Without Config.Throttles, a new Service has throttles of its own.
	cfg.Throttles = nil
	f.svc, err = accounts.New(bg, f.store, keys, cfg, f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	f.signIn(t, "gail", "right-password", "192.0.2.1", "")
}

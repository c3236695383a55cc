package accounts_test

import (
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/accounts"
)

// Challenge issuance is limited per client key and, across all keys, for
// the whole site; both refill with time.
func TestChallengeLimits(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	cfg.Challenges = accounts.ChallengeLimits{
		PerIP:  accounts.Limit{Burst: 2, Interval: time.Minute},
		Global: accounts.Limit{Burst: 3, Interval: time.Second},
	}
	f := newFixture(t, cfg)
	ch := func(ip string) error {
		_, err := f.svc.NewChallenge(accounts.PurposeAnonymousRequest, ip)
		return err
	}
	for _, ip := range []string{"192.0.2.1", "192.0.2.1"} {
		if err := ch(ip); err != nil {
			t.Fatal(err)
		}
	}
	wantThrottled(t, ch("192.0.2.1"), accounts.LimitIP)
	if err := ch("192.0.2.2"); err != nil {
		t.Fatal(err)
	}
	te := wantThrottled(t, ch("192.0.2.3"), accounts.LimitGlobal)
	if te.RetryAfter > time.Second {
		t.Fatalf("RetryAfter %v, want at most the global interval", te.RetryAfter)
	}
	f.clock.Advance(time.Second)
	if err := ch("192.0.2.3"); err != nil {
		t.Fatalf("after the global bucket refilled: %v", err)
	}
	if n, err := f.store.CountChallenges(); err != nil || n != 4 {
		t.Fatalf("%d challenges stored (%v); refused ones must write nothing", n, err)
	}
}

package accounts_test

import (
	"errors"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
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
	w0 := f.store.Writes()
	ch := func(ip string) error {
		_, err := f.svc.NewChallenge(bg, accounts.PurposeAnonymousRequest, ip)
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
	if n := f.store.Writes() - w0; n != 4 {
		t.Fatalf("%d challenges stored; refused ones must write nothing", n)
	}
}

// Authenticate accepts access tokens of the configured clients only: a
// token minted (with the same keys and issuer) for a client this service
// does not serve is refused as wrong_audience.
func TestAuthenticateChecksAudience(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultConfig()) // serves app, my-app, other-app
	ok, err := f.svc.CreateGuest(bg, issuer, "app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(bg, ok.Tokens.AccessToken, issuer); err != nil {
		t.Fatalf("a token of a served client: %v", err)
	}
	foreign, err := f.svc.CreateGuest(bg, issuer, "someone-elses-app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.svc.Authenticate(bg, foreign.Tokens.AccessToken, issuer)
	var inv *tokens.InvalidError
	if !errors.As(err, &inv) || inv.Reason != tokens.ReasonAudience || id != nil {
		t.Fatalf("Authenticate = %v, %v; want %s", id, err, tokens.ReasonAudience)
	}
}

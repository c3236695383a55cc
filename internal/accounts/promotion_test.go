package accounts_test

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// A web guest is a guest (guest.created via "web"); its refresh token
// signs it in again while it is a guest and not after it signed up.
func TestWebGuest(t *testing.T) {
	t.Parallel()
	o := &observed{}
	cfg := limitsConfig()
	cfg.Observer = o.observe
	f := newFixture(t, cfg)
	g, err := f.svc.CreateWebGuest(bg, issuer, "app", "192.0.2.9")
	if err != nil || !g.User.IsAnonymous() {
		t.Fatalf("web guest: %+v %v", g, err)
	}
	o.wantOne(t, "created", events.GuestCreated, g.User.ID, map[string]any{"via": "web"})
	again, err := f.svc.GuestRefresh(bg, issuer, "app", g.Tokens.RefreshToken)
	if err != nil || again.User.ID != g.User.ID {
		t.Fatalf("signed in again: %+v %v", again, err)
	}
	// Another client's token, and garbage: invalid_grant.
	for _, c := range []struct{ client, token string }{{"other-app", again.Tokens.RefreshToken}, {"app", "x.y.z"}} {
		_, err := f.svc.GuestRefresh(bg, issuer, c.client, c.token)
		wantCode(t, err, accounts.CodeInvalidGrant)
	}
	id := f.authenticate(t, again.Tokens.AccessToken)
	if _, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr("wendy")}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.GuestRefresh(bg, issuer, "app", again.Tokens.RefreshToken)
	wantCode(t, err, accounts.CodeInvalidRequest)
	// Refused before rotating: the signed-up user's token still works.
	if _, err := f.svc.Refresh(bg, issuer, "app", again.Tokens.RefreshToken); err != nil {
		t.Fatalf("the refused token was spent: %v", err)
	}
	// A spent token is a reuse, as for the refresh grant: the session ends.
	w, _ := f.svc.CreateWebGuest(bg, issuer, "app", "192.0.2.9")
	w2, err := f.svc.GuestRefresh(bg, issuer, "app", w.Tokens.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.GuestRefresh(bg, issuer, "app", w.Tokens.RefreshToken)
	if !errors.Is(err, accounts.ErrRefreshReuse) {
		t.Fatalf("a spent token: %v", err)
	}
	_, err = f.svc.GuestRefresh(bg, issuer, "app", w2.Tokens.RefreshToken)
	wantCode(t, err, accounts.CodeInvalidGrant)
}

// A promotion code is issued for a guest's current refresh token, taken
// once, for its own client, within five minutes; the promotion keeps the
// guest's id and reports guest.upgraded.
func TestPromotionCode(t *testing.T) {
	t.Parallel()
	o := &observed{}
	cfg := limitsConfig()
	cfg.Observer = o.observe
	f := newFixture(t, cfg)
	g, _ := f.guest(t)
	o.take()
	code, err := f.svc.NewPromotionCode(bg, g.Tokens.RefreshToken, "192.0.2.1")
	if err != nil || len(code.Code) != 32 || !code.ExpiresAt.Equal(f.clock.Now().Add(accounts.PromotionCodeLifetime)) {
		t.Fatalf("code: %+v %v", code, err)
	}
	_, err = f.svc.ConsumePromotionCode(bg, code.Code, "other-app")
	wantCode(t, err, accounts.CodeInvalidGrant) // another client's request: spent all the same
	_, err = f.svc.ConsumePromotionCode(bg, code.Code, "app")
	wantCode(t, err, accounts.CodeInvalidGrant)

	code, _ = f.svc.NewPromotionCode(bg, g.Tokens.RefreshToken, "192.0.2.1")
	// A device challenge is no promotion code (they are stored apart).
	ch, err := f.svc.NewChallenge(bg, accounts.PurposeAnonymousRequest, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.ConsumePromotionCode(bg, ch.Token, "app")
	wantCode(t, err, accounts.CodeInvalidGrant)
	u, err := f.svc.ConsumePromotionCode(bg, code.Code, "app")
	if err != nil || u.ID != g.User.ID {
		t.Fatalf("consume: %+v %v", u, err)
	}
	_, err = f.svc.ConsumePromotionCode(bg, code.Code, "app")
	wantCode(t, err, accounts.CodeInvalidGrant)

	// The promotion itself is the guest's own upgrade (the pages' sign-up
	// after the authorization endpoint took the code): same id.
	name, pw := "petra", "petra-password"
	res, err := f.svc.UpdateProfile(bg, &accounts.Identity{User: u, Session: g.Session},
		accounts.ProfileUpdate{Name: &name, Password: &pw, ClientIP: "192.0.2.1", Issuer: issuer})
	if err != nil || res.User.ID != g.User.ID || res.User.Name != "petra" || res.User.Tag != model.TagNormal {
		t.Fatalf("promote: %+v %v", res, err)
	}
	ev := o.wantOne(t, "promoted", events.GuestUpgraded, g.User.ID, map[string]any{"new_name": "petra"})
	if ev.ClientID != "app" {
		t.Fatalf("upgrade reported for client %q", ev.ClientID)
	}
	// A code for a user who is no longer a guest, or from an old token.
	_, err = f.svc.NewPromotionCode(bg, g.Tokens.RefreshToken, "192.0.2.1")
	wantCode(t, err, accounts.CodeInvalidRequest)

	h, _ := f.guest(t)
	expiring, _ := f.svc.NewPromotionCode(bg, h.Tokens.RefreshToken, "192.0.2.1")
	if _, err := f.svc.Refresh(bg, issuer, "app", h.Tokens.RefreshToken); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.NewPromotionCode(bg, h.Tokens.RefreshToken, "192.0.2.1")
	wantCode(t, err, accounts.CodeInvalidGrant)
	f.clock.Advance(accounts.PromotionCodeLifetime)
	_, err = f.svc.ConsumePromotionCode(bg, expiring.Code, "app")
	wantCode(t, err, accounts.CodeInvalidGrant)
}

// Of concurrent uses of one promotion code, exactly one gets the guest.
func TestPromotionCodeOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, limitsConfig())
	g, _ := f.guest(t)
	code, err := f.svc.NewPromotionCode(bg, g.Tokens.RefreshToken, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Int32
	var wg sync.WaitGroup
	for range 60 {
		wg.Go(func() {
			_, err := f.svc.ConsumePromotionCode(bg, code.Code, "app")
			var ae *accounts.Error
			switch {
			case err == nil:
				got.Add(1)
			case !errors.As(err, &ae):
				t.Errorf("consume: %v", err)
			}
		})
	}
	wg.Wait()
	if got.Load() != 1 {
		t.Fatalf("%d of 60 took the code", got.Load())
	}
}

// Issuing promotion codes draws on the challenge limits.
func TestPromotionCodeLimited(t *testing.T) {
	t.Parallel()
	cfg := limitsConfig()
	cfg.Challenges.PerIP = accounts.Limit{Burst: 2, Interval: time.Hour}
	f := newFixture(t, cfg)
	g, _ := f.guest(t)
	for range 2 {
		if _, err := f.svc.NewPromotionCode(bg, g.Tokens.RefreshToken, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	_, err := f.svc.NewPromotionCode(bg, g.Tokens.RefreshToken, "192.0.2.1")
	var te *accounts.ThrottledError
	if !errors.As(err, &te) {
		t.Fatalf("third code: %v", err)
	}
}

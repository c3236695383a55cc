package accounts_test

import (
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

const otherIssuer = "https://other.example.com"

// Sessions are bound to the issuer they were started under: two sites
// sharing a store honour neither each other's refresh tokens nor each
// other's browser handles, and the refused use ends nothing.
func TestSessionsBoundToIssuer(t *testing.T) {
	f := newFixture(t, browserConfig())
	g, _ := f.guest(t)
	if g.Session.Issuer != issuer {
		t.Fatalf("session issuer %q", g.Session.Issuer)
	}
	_, err := f.svc.Refresh(bg, otherIssuer, "app", g.Tokens.RefreshToken)
	wantCode(t, err, "invalid_grant")
	// Revoking it there is not this site's business: nothing ends.
	if err := f.svc.Revoke(bg, otherIssuer, "app", g.Tokens.RefreshToken); err != nil {
		t.Fatal(err)
	}
	r, err := f.svc.Refresh(bg, issuer, "app", g.Tokens.RefreshToken)
	if err != nil {
		t.Fatalf("the session's own issuer: %v", err)
	}

	login, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.svc.BrowserAuthenticate(bg, login.Handle, otherIssuer)
	wantInvalid(t, err, tokens.ReasonIssuer)
	if id, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer); err != nil || id.User.ID != login.User.ID {
		t.Fatalf("the handle's own issuer: %v %v", id, err)
	}
	// The other site's refusals ended neither session.
	if _, err := f.svc.Refresh(bg, issuer, "app", r.Tokens.RefreshToken); err != nil {
		t.Fatal(err)
	}
}

// A session stored before sessions had an issuer keeps working, and is
// bound to the issuer of its next write (a refresh, a browser slide): from
// then on the other issuer is refused.
func TestLegacySessionBoundOnFirstUse(t *testing.T) {
	f := newFixture(t, browserConfig())
	g, _ := f.guest(t)
	login, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{g.Session.ID, login.Session.ID} {
		if _, err := f.store.UpdateSession(bg, id, func(s *model.Session) error { s.Issuer = ""; return nil }, nil); err != nil {
			t.Fatal(err)
		}
	}
	r, err := f.svc.Refresh(bg, otherIssuer, "app", g.Tokens.RefreshToken)
	if err != nil {
		t.Fatalf("legacy refresh: %v", err)
	}
	if s, _ := f.store.GetSession(bg, g.Session.ID); s.Issuer != otherIssuer {
		t.Fatalf("legacy session bound to %q after its refresh", s.Issuer)
	}
	_, err = f.svc.Refresh(bg, issuer, "app", r.Tokens.RefreshToken)
	wantCode(t, err, "invalid_grant")

	// The unconfirmed browser session slides on its first return.
	if _, slid, err := f.svc.BrowserAuthenticate(bg, login.Handle, otherIssuer); err != nil || slid == nil || slid.Session.Issuer != otherIssuer {
		t.Fatalf("legacy browser session: %+v %v", slid, err)
	}
	f.clock.Advance(time.Second)
	_, _, err = f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	wantInvalid(t, err, tokens.ReasonIssuer)
}

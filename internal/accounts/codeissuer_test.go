package accounts_test

import (
	"errors"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// A code is redeemed only under the issuer its browser sign-in was made
// under: sites sharing a store do not take each other's codes, and the
// refusal leaves the code to its own site.
func TestRedeemCodeOnlyUnderItsIssuer(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultConfig())
	const siteA, siteB = "https://a.example", "https://b.example"
	login, err := f.svc.CreateBrowserGuest(bg, siteA, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	id := &accounts.Identity{User: login.User, Session: login.Session}
	code, err := f.svc.IssueCode(bg, id, accounts.CodeRequest{ClientID: "app", RedirectURI: "https://app.example/cb", Scope: "openid"})
	if err != nil {
		t.Fatal(err)
	}
	redeem := func(issuer string) (*accounts.Issued, error) {
		return f.svc.RedeemCode(bg, accounts.Redemption{Issuer: issuer, ClientID: "app", Authenticated: true, Code: code})
	}
	var refused *accounts.Error
	if _, err := redeem(siteB); !errors.As(err, &refused) || refused.Code != accounts.CodeInvalidGrant {
		t.Fatalf("redeemed under another issuer: %v", err)
	}
	iss, err := redeem(siteA)
	if err != nil {
		t.Fatalf("its own site, after the refusal: %v", err)
	}
	if iss.Session.Issuer != siteA || iss.User.ID != login.User.ID {
		t.Fatalf("session %+v of user %s", iss.Session, iss.User.ID)
	}
}

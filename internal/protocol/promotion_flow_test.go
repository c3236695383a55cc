package protocol_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
)

// Authgear's promotion through the authorization endpoint, as @authgear/web
// runs it: a web anonymous user asks for a promotion code, then sends the
// browser (which has no session here) to the authorization endpoint with
// prompt=login and the anonymous login_hint carrying the code; the
// sign-up page there promotes that user, who keeps its id, and the code
// it gets is that user's. The code is single-use: a second request with it
// goes back to the app with an error, and a browser with a bad code gets
// no session.
func TestAuthorizePromotesTheAnonymousUser(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	ctx := context.Background()
	guest, err := s.svc.CreateWebGuest(ctx, opIssuer, "spa", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := s.svc.NewPromotionCode(ctx, guest.Tokens.RefreshToken, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	hint := "https://authgear.com/login_hint?" + url.Values{"type": {"anonymous"}, "promotion_code": {pc.Code}}.Encode()
	auth := authorizeURL("spa", spaCB, "prompt", "login", "login_hint", hint, "scope", "openid offline_access")

	// prompt=none cannot promote (no page may be shown): login_required,
	// no session, and the code stays for the real request.
	none := s.agent().get(authorizeURL("spa", spaCB, "prompt", "none", "login_hint", hint))
	if q := callback(t, none, spaCB); q.Get("error") != "login_required" || len(none.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("prompt=none with a promotion code: %v %v", q, none.header.Values("Set-Cookie"))
	}

	b := s.agent()
	back := b.signUp(b.get(auth), "paula")
	q := callback(t, back, spaCB)
	verifier, _ := pkce("v")
	r := s.redeem(url.Values{"client_id": {"spa"}, "code": {q.Get("code")}, "redirect_uri": {spaCB}, "code_verifier": {verifier}})
	if r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	c := idClaims(t, r.json(t)["id_token"].(string))
	if c["sub"] != guest.User.ID || c["is_anonymous"] != false || c["preferred_username"] != "paula" {
		t.Fatalf("after the promotion: sub %v (want the guest's %s), is_anonymous %v, preferred_username %v", c["sub"], guest.User.ID, c["is_anonymous"], c["preferred_username"])
	}

	// The code was taken: used again, the app hears of it.
	again := s.agent().get(auth)
	if q := callback(t, again, spaCB); q.Get("error") != "invalid_request" || q.Get("state") != "st-1" {
		t.Fatalf("a used promotion code: %v", q)
	}
	if len(again.header.Values("Set-Cookie")) != 0 {
		t.Fatalf("a used promotion code gave a session: %v", again.header.Values("Set-Cookie"))
	}
}

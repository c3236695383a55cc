package protocol_test

import (
	"bytes"
	"encoding/base64"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/protocol"
)

var basicApp = "Basic " + base64.StdEncoding.EncodeToString([]byte("app:"+secretApp))

// Every refusal of a code redemption; none spends the code (x/oauth2
// retries a failed client authentication with the other method, and a
// code's own client, with its redirect URI and verifier, must still be
// able to redeem it after someone else tried).
func TestRedeemCodeRefusals(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	a.signInAsGuest(a.get(authorizeURL("app", appCB)))
	verifier, _ := pkce("v")
	withPKCE := func() string { return a.codeFor(authorizeURL("app", appCB), appCB) }
	without := func() string {
		return a.codeFor(authorizeURL("app", appCB, "code_challenge", "", "code_challenge_method", ""), appCB)
	}
	ok := url.Values{"client_id": {"app"}, "client_secret": {secretApp}, "redirect_uri": {appCB}, "code_verifier": {verifier}}
	with := func(kv ...string) url.Values {
		v := url.Values{}
		for k, vs := range ok {
			v[k] = slices.Clone(vs)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "-" {
				v.Del(kv[i])
			} else {
				v.Set(kv[i], kv[i+1])
			}
		}
		return v
	}
	for _, c := range []struct {
		name   string
		code   func() string
		form   url.Values
		status int
		err    string
		spent  bool // a correct redemption afterwards fails
	}{
		{"unknown code", func() string { return strings.Repeat("x", 43) }, ok, 400, "invalid_grant", false},
		{"garbage code", func() string { return "not-a-code" }, ok, 400, "invalid_grant", false},
		{"wrong secret", withPKCE, with("client_secret", "nope"), 401, "invalid_client", false},
		{"another client", withPKCE, with("client_id", "other", "client_secret", "other-secret"), 400, "invalid_grant", false},
		{"redirect_uri differs", withPKCE, with("redirect_uri", appCB2), 400, "invalid_grant", false},
		{"verifier missing", withPKCE, with("code_verifier", "-"), 400, "invalid_request", false},
		{"verifier wrong", withPKCE, with("code_verifier", strings.Repeat("w", 43)), 400, "invalid_grant", false},
		{"verifier too short", withPKCE, with("code_verifier", verifier[:42]), 400, "invalid_grant", false},
		{"verifier without a challenge", without, ok, 400, "invalid_grant", false},
	} {
		code := c.code()
		r := s.redeem(with("code", code, "client_id", c.form.Get("client_id"), "client_secret", c.form.Get("client_secret"),
			"redirect_uri", orDash(c.form.Get("redirect_uri")), "code_verifier", orDash(c.form.Get("code_verifier"))))
		if r.status != c.status || r.json(t)["error"] != c.err {
			t.Errorf("%s: %d %s; want %d %s", c.name, r.status, r.body, c.status, c.err)
			continue
		}
		if c.name == "unknown code" || c.name == "garbage code" {
			continue
		}
		form := ok
		if c.name == "verifier without a challenge" {
			form = with("code_verifier", "-")
		}
		after := s.redeem(with("code", code, "code_verifier", orDash(form.Get("code_verifier"))))
		if spent := after.status != 200; spent != c.spent {
			t.Errorf("%s: spent = %v, want %v (%d %s)", c.name, spent, c.spent, after.status, after.body)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// What a redemption may leave out: a confidential client that
// authenticated may omit redirect_uri (Casdoor's server SDKs do) and send
// unknown scopes; a public client may not omit it. Basic works as the body
// credentials do, on both token paths.
func TestRedeemCodeCasdoorAndPublic(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	a.signInAsGuest(a.get(authorizeURL("app", appCB)))
	// Casdoor's sign-in URL: scope=read, state = the app's name, no PKCE.
	code := a.codeFor(authorizeURL("app", appCB, "scope", "read", "state", "my-app", "code_challenge", "", "code_challenge_method", "", "nonce", ""), appCB)
	r := s.post(protocol.PathTokenCasdoor, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "scope": {"read"}}, "Authorization", basicApp)
	set := r.json(t)
	if r.status != 200 || set["id_token"] == "" || set["scope"] != "openid" {
		t.Fatalf("Casdoor redemption: %d %s", r.status, r.body)
	}
	if _, ok := idClaims(t, set["id_token"].(string))["nonce"]; ok {
		t.Fatal("an ID token for a request without a nonce has one")
	}
	// A public client must name its redirect_uri.
	v, _ := pkce("v")
	spaCode := a.codeFor(authorizeURL("spa", spaCB), spaCB)
	if r := s.redeem(url.Values{"code": {spaCode}, "client_id": {"spa"}, "code_verifier": {v}}); r.status != 400 || r.json(t)["error"] != "invalid_request" {
		t.Fatalf("public client without redirect_uri: %d %s", r.status, r.body)
	}
	// The registered URI with its query, given as registered.
	c2 := a.codeFor(authorizeURL("app", appCB2), appCB2)
	if r := s.redeem(url.Values{"code": {c2}, "redirect_uri": {appCB2}, "code_verifier": {v}}, "Authorization", basicApp); r.status != 200 {
		t.Fatalf("redirect with a query: %d %s", r.status, r.body)
	}
}

// A code lives 60 seconds, and only while the browser sign-in it came
// from does.
func TestRedeemCodeExpiry(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	a.signInAsGuest(a.get(authorizeURL("app", appCB)))
	v, _ := pkce("v")
	form := func(code string) url.Values {
		return url.Values{"code": {code}, "client_id": {"app"}, "client_secret": {secretApp}, "redirect_uri": {appCB}, "code_verifier": {v}}
	}
	code := a.codeFor(authorizeURL("app", appCB), appCB)
	s.advance(61 * time.Second)
	if r := s.redeem(form(code)); r.status != 400 || r.json(t)["error"] != "invalid_grant" {
		t.Fatalf("expired code: %d %s", r.status, r.body)
	}
	code = a.codeFor(authorizeURL("app", appCB), appCB)
	s.advance(55 * time.Second)
	if r := s.redeem(form(code)); r.status != 200 {
		t.Fatalf("code at 55s: %d %s", r.status, r.body)
	}
	code = a.codeFor(authorizeURL("app", appCB), appCB)
	if r := a.submit("/auth/signout", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", r.status)
	}
	if r := s.redeem(form(code)); r.status != 400 || !strings.Contains(r.json(t)["error_description"].(string), "ended") {
		t.Fatalf("code after the sign-out: %d %s", r.status, r.body)
	}
}

// Discovery names every endpoint and every REQUIRED field of OpenID
// Connect Discovery 1.0.
func TestDiscoveryFields(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+protocol.PathDiscovery, nil)
	doc := (&agent{s: s, c: http.DefaultClient}).do(req).json(t)
	for k, want := range map[string]any{
		"issuer":                 opIssuer,
		"authorization_endpoint": opIssuer + "/oauth/authorize",
		"token_endpoint":         opIssuer + "/oauth/token",
		"jwks_uri":               opIssuer + "/.well-known/jwks.json",
		"userinfo_endpoint":      opIssuer + "/oauth/userinfo",
		"end_session_endpoint":   opIssuer + "/oauth/logout",
		"introspection_endpoint": opIssuer + "/oauth/introspect",
		"revocation_endpoint":    opIssuer + "/oauth/revoke",
		"authorization_response_iss_parameter_supported": true,
		"request_uri_parameter_supported":                false,
	} {
		if doc[k] != want {
			t.Errorf("%s = %v, want %v", k, doc[k], want)
		}
	}
	for k, want := range map[string]string{
		"response_types_supported":              "code",
		"subject_types_supported":               "public",
		"id_token_signing_alg_values_supported": "ES256",
		"code_challenge_methods_supported":      "S256",
		"scopes_supported":                      "openid",
		"claims_supported":                      "nonce",
		"grant_types_supported":                 "authorization_code",
		"token_endpoint_auth_methods_supported": "none",
		"prompt_values_supported":               "create",
	} {
		list, _ := doc[k].([]any)
		if !slices.Contains(list, any(want)) {
			t.Errorf("%s = %v, want it to list %s", k, doc[k], want)
		}
	}
	if list := doc["code_challenge_methods_supported"].([]any); len(list) != 1 {
		t.Errorf("code_challenge_methods_supported = %v: plain is refused", list)
	}
}

// RP-initiated logout: with an ID token of the signed-in user it signs out
// at once and returns to a registered URI with the state; without, the
// visitor confirms on the sign-out page first. The ID token's session
// ends with it.
func TestEndSession(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	v, _ := pkce("v")
	login := func(a *agent) map[string]any {
		a.signInAsGuest(a.get(authorizeURL("app", appCB)))
		code := a.codeFor(authorizeURL("app", appCB), appCB)
		r := s.redeem(url.Values{"code": {code}, "redirect_uri": {appCB}, "code_verifier": {v}}, "Authorization", basicApp)
		if r.status != 200 {
			t.Fatalf("redeem: %d %s", r.status, r.body)
		}
		return r.json(t)
	}
	refreshes := func(set map[string]any) bool {
		r := s.post(protocol.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {set["refresh_token"].(string)}}, "Authorization", basicApp)
		if r.status == 200 {
			set["refresh_token"] = r.json(t)["refresh_token"]
		}
		return r.status == 200
	}
	signedIn := func(a *agent) bool { return a.get("/auth/account").status == 200 }

	// The hint matches: out at once, back to the app with the state.
	a := s.agent()
	set := login(a)
	q := url.Values{"id_token_hint": {set["id_token"].(string)}, "post_logout_redirect_uri": {appBye}, "state": {"bye-1"}}
	r := a.get(protocol.PathEndSession + "?" + q.Encode())
	if r.status != http.StatusSeeOther || r.location() != appBye+"?state=bye-1" {
		t.Fatalf("logout with a matching hint: %d %s %s", r.status, r.location(), r.body)
	}
	if signedIn(a) || refreshes(set) {
		t.Fatal("still signed in, or the ID token's session still refreshes")
	}

	// No hint: the sign-out page asks; a GET alone signs nobody out.
	b := s.agent()
	set = login(b)
	r = b.get(protocol.PathEndSession + "?" + url.Values{"client_id": {"app"}, "post_logout_redirect_uri": {appBye}}.Encode())
	page := b.followToPage(r, "/auth/signout")
	back := returnTo(t, page)
	if !signedIn(b) {
		t.Fatal("a GET without a hint signed the visitor out")
	}
	if r := b.get(back); r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/auth/signout?") || !signedIn(b) {
		t.Fatalf("resume before confirming: %d %s", r.status, r.location())
	}
	if r := b.submit("/auth/signout", url.Values{"return_to": {back}}); r.status != http.StatusSeeOther || r.location() != back {
		t.Fatalf("confirm: %d %s", r.status, r.location())
	}
	if r := b.get(back); r.status != http.StatusSeeOther || r.location() != appBye {
		t.Fatalf("after confirming: %d %s", r.status, r.location())
	}
	if signedIn(b) || !refreshes(set) {
		t.Fatal("the browser is still signed in, or a session no hint named ended")
	}

	// Another user's hint: confirmation as well.
	c := s.agent()
	login(c)
	r = c.get(protocol.PathEndSession + "?" + url.Values{"id_token_hint": {set["id_token"].(string)}}.Encode())
	c.followToPage(r, "/auth/signout")
	if !signedIn(c) {
		t.Fatal("another user's hint signed the visitor out")
	}

	// No session at all: the signed-out page, or the registered URI.
	d := s.agent()
	if r := d.get(protocol.PathEndSession); r.status != 200 || !strings.Contains(r.body, "You are signed out.") {
		t.Fatalf("no session, no URI: %d %s", r.status, r.body)
	}
	for name, bad := range map[string]url.Values{
		"unregistered URI":        {"client_id": {"app"}, "post_logout_redirect_uri": {"https://evil.example/"}},
		"another client's URI":    {"client_id": {"app"}, "post_logout_redirect_uri": {"https://spa.example/"}},
		"URI without its client":  {"post_logout_redirect_uri": {appBye}},
		"unknown client":          {"client_id": {"nobody"}},
		"forged hint":             {"id_token_hint": {"eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."}},
		"hint of another client":  {"id_token_hint": {set["id_token"].(string)}, "client_id": {"spa"}},
		"a redirect URI repeated": {"client_id": {"app"}, "post_logout_redirect_uri": {appBye, appBye}},
	} {
		if r := d.get(protocol.PathEndSession + "?" + bad.Encode()); r.status != 400 || r.location() != "" {
			t.Errorf("%s: %d %s", name, r.status, r.location())
		}
	}
}

// Introspection (RFC 7662) tells a confidential client about its own
// tokens; everything else is inactive. Casdoor's path takes multipart.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	a.signInAsGuest(a.get(authorizeURL("app", appCB)))
	v, _ := pkce("v")
	code := a.codeFor(authorizeURL("app", appCB), appCB)
	set := s.redeem(url.Values{"code": {code}, "redirect_uri": {appCB}, "code_verifier": {v}}, "Authorization", basicApp).json(t)
	at, rt := set["access_token"].(string), set["refresh_token"].(string)
	sub := idClaims(t, at)["sub"]

	ask := func(token string, auth ...string) *reply {
		return s.post(protocol.PathIntrospect, url.Values{"token": {token}}, auth...)
	}
	r := ask(at, "Authorization", basicApp)
	got := r.json(t)
	if r.status != 200 || got["active"] != true || got["client_id"] != "app" || got["token_type"] != "Bearer" || got["sub"] != sub ||
		got["iss"] != opIssuer || got["jti"] == nil || got["exp"] == nil || got["iat"] == nil || got["nbf"] == nil || !strings.HasPrefix(got["username"].(string), "guest_") {
		t.Fatalf("access token: %d %s", r.status, r.body)
	}
	if aud, _ := got["aud"].([]any); len(aud) != 1 || aud[0] != "app" {
		t.Fatalf("aud %v", got["aud"])
	}
	if r := s.post(protocol.PathIntrospect, url.Values{"token": {rt}, "client_id": {"app"}, "client_secret": {secretApp}}); r.json(t)["active"] != true || r.json(t)["token_type"] != "refresh_token" {
		t.Fatalf("refresh token: %s", r.body)
	}
	// casdoor-go-sdk: multipart, Basic, on Casdoor's path.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("token", at)
	mw.WriteField("token_type_hint", "access_token")
	mw.Close()
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+protocol.PathIntrospectCasdoor, &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", basicApp)
	if r := (&agent{s: s, c: http.DefaultClient}).do(req); r.status != 200 || r.json(t)["active"] != true {
		t.Fatalf("multipart: %d %s", r.status, r.body)
	}
	for name, c := range map[string]struct {
		token string
		auth  []string
	}{
		"another client's token": {at, []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("other:other-secret"))}},
		"garbage":                {"garbage", []string{"Authorization", basicApp}},
		"an ID token":            {set["id_token"].(string), []string{"Authorization", basicApp}},
	} {
		if r := ask(c.token, c.auth...); r.status != 200 || r.body != "{\"active\":false}\n" {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	if r := s.post(protocol.PathIntrospect, url.Values{"token": {at}, "client_id": {"spa"}}); r.status != 401 || r.json(t)["error"] != "invalid_client" {
		t.Errorf("public client: %d %s", r.status, r.body)
	}
	if r := ask(at); r.status != 400 && r.status != 401 {
		t.Errorf("no client authentication: %d %s", r.status, r.body)
	}
	// After revocation: inactive.
	if r := s.post(protocol.PathRevoke, url.Values{"token": {rt}}, "Authorization", basicApp); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	for _, tok := range []string{at, rt} {
		if r := ask(tok, "Authorization", basicApp); r.json(t)["active"] != false {
			t.Errorf("after revocation: %s", r.body)
		}
	}
}

// A public client's token may be revoked with the token alone (Authgear's
// SDK sends nothing else); a confidential client's may not.
func TestRevokeWithoutClientID(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	a.signInAsGuest(a.get(authorizeURL("spa", spaCB)))
	v, _ := pkce("v")
	redeem := func(client, redirect string, auth ...string) map[string]any {
		code := a.codeFor(authorizeURL(client, redirect), redirect)
		form := url.Values{"code": {code}, "redirect_uri": {redirect}, "code_verifier": {v}}
		if len(auth) == 0 {
			form.Set("client_id", client)
		}
		r := s.redeem(form, auth...)
		if r.status != 200 {
			t.Fatalf("redeem: %d %s", r.status, r.body)
		}
		return r.json(t)
	}
	spa := redeem("spa", spaCB)
	if r := s.post(protocol.PathRevoke, url.Values{"token": {spa["refresh_token"].(string)}}); r.status != 200 {
		t.Fatalf("token alone: %d %s", r.status, r.body)
	}
	if r := s.post(protocol.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {spa["refresh_token"].(string)}, "client_id": {"spa"}}); r.status != 400 {
		t.Fatalf("refresh after revocation: %d %s", r.status, r.body)
	}
	app := redeem("app", appCB, "Authorization", basicApp)
	if r := s.post(protocol.PathRevoke, url.Values{"token": {app["refresh_token"].(string)}}); r.status != 401 || r.json(t)["error"] != "invalid_client" {
		t.Fatalf("a confidential client's token alone: %d %s", r.status, r.body)
	}
	if r := s.post(protocol.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {app["refresh_token"].(string)}}, "Authorization", basicApp); r.status != 200 {
		t.Fatalf("the confidential client's session ended: %d %s", r.status, r.body)
	}
	if r := s.post(protocol.PathRevoke, url.Values{"token": {"unknown"}}); r.status != 200 {
		t.Fatalf("an unknown token alone: %d %s", r.status, r.body)
	}
}

package protocol_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/oidcrp"
	"github.com/guestauth/caddy-guestauth/internal/oidcrp/oidcrptest"
	"github.com/guestauth/caddy-guestauth/internal/pages"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
)

// withProvider gives the site's pages zitadel's example OP as "testidp".
func withProvider(t *testing.T, s *site) {
	t.Helper()
	issuer := oidcrptest.Start(t, opIssuer+"/auth/provider/testidp/callback")
	rp, err := oidcrp.New(oidcrp.Config{Name: "testidp", Issuer: issuer, ClientID: oidcrptest.ClientID, ClientSecret: oidcrptest.ClientSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.pages.Providers = []pages.Provider{{RP: rp, Label: "Test IdP"}}
}

// providerStart calls the endpoint with a Bearer token and form.
func (s *site) providerStart(token string, form url.Values) *reply {
	s.t.Helper()
	req := httptest.NewRequest(http.MethodPost, opIssuer+protocol.PathProviderStart, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	w := httptest.NewRecorder()
	if err := s.h.ProviderStart(w, req); err != nil {
		s.t.Fatal(err)
	}
	return &reply{status: w.Code, header: w.Header(), body: w.Body.String()}
}

// cookie is the value of the agent's cookie name on the site.
func (a *agent) cookie(t *testing.T, name string) string {
	t.Helper()
	u, _ := url.Parse(a.s.srv.URL)
	for _, c := range a.c.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	t.Fatalf("no cookie %s", name)
	return ""
}

// local is the site-relative part of one of the site's absolute URLs.
func local(t *testing.T, abs string) string {
	t.Helper()
	if !strings.HasPrefix(abs, opIssuer+"/") {
		t.Fatalf("%q is not on the site", abs)
	}
	return strings.TrimPrefix(abs, opIssuer)
}

// The API client's upgrade: the app, holding a guest's access token, gets
// a one-time URL; a browser (without the guest's cookie) opens it, signs
// in at the provider, and comes back to the app's redirect URI with a code
// the token endpoint redeems for the member's tokens, same user id. The
// guest's old tokens end; the URL does not work twice.
func TestProviderStartForAnAPIGuest(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	withProvider(t, s)
	guest, err := s.svc.CreateGuest(t.Context(), opIssuer, "app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	verifier, challenge := pkce("w")
	form := url.Values{"provider": {"testidp"}, "client_id": {"app"}, "redirect_uri": {appCB}, "state": {"app-state"},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "scope": {"openid profile"}, "nonce": {"app-nonce"}}
	r := s.providerStart(guest.Tokens.AccessToken, form)
	if r.status != http.StatusOK || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	m := r.json(t)
	start, _ := m["url"].(string)
	if !strings.HasPrefix(start, opIssuer+"/auth/provider/testidp/start?handoff=") || m["expires_in"] != float64(300) {
		t.Fatalf("start answer %v", m)
	}

	// A browser with a session of its own (a web guest's): the pages send
	// it to the OP.
	a := s.agent()
	if r := a.submit("/auth/guest", url.Values{}); r.status != http.StatusSeeOther {
		t.Fatalf("the browser's own guest: %d %s", r.status, r.body)
	}
	own := a.cookie(t, "gs")
	r = a.get(local(t, start))
	if r.status != http.StatusSeeOther {
		t.Fatalf("opening the URL: %d %s", r.status, r.body)
	}
	cb := signInAtOP(t, a, r.location(), "alice")
	r = a.get(local(t, cb)) // the provider's callback
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), protocol.PathAuthorize+"?resume=") {
		t.Fatalf("callback: %d %q %s", r.status, r.location(), r.body)
	}
	q := callback(t, a.get(r.location()), appCB)
	if q.Get("state") != "app-state" || q.Get("code") == "" {
		t.Fatalf("back at the app: %v", q)
	}
	tok := s.redeem(url.Values{"code": {q.Get("code")}, "redirect_uri": {appCB}, "code_verifier": {verifier}, "client_id": {"app"}, "client_secret": {secretApp}})
	if tok.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", tok.status, tok.body)
	}
	claims := idClaims(t, tok.json(t)["id_token"].(string))
	if claims["sub"] != guest.User.ID || claims["nonce"] != "app-nonce" {
		t.Fatalf("ID token %v; want sub %s", claims, guest.User.ID)
	}
	u, err := s.st.GetUser(t.Context(), guest.User.ID)
	if err != nil || u.IsAnonymous() || u.Name != "alice" || u.Identities != 1 {
		t.Fatalf("the guest after: %+v, %v", u, err)
	}
	// The guest's own tokens ended with the privilege change.
	if _, err := s.svc.Authenticate(t.Context(), guest.Tokens.AccessToken, opIssuer); err == nil {
		t.Fatal("the guest's access token still works")
	}
	// The browser now holds the member's session; the one it had before
	// ended with it (a new session on every privilege change, the old one
	// not left behind).
	if now := a.cookie(t, "gs"); now == own {
		t.Fatal("the browser kept its old session cookie")
	}
	if _, _, err := s.svc.BrowserAuthenticate(t.Context(), own, opIssuer); err == nil {
		t.Fatal("the browser's old session survived the sign-in")
	}
	// The URL works once.
	if r := a.get(local(t, start)); r.status != http.StatusBadRequest || !strings.Contains(r.body, "expired or was already used") {
		t.Fatalf("the URL again: %d %s", r.status, r.body)
	}
}

// signInAtOP follows the authorization URL at the OP as user and returns
// the callback URL it sends the browser to.
func signInAtOP(t *testing.T, a *agent, authURL, user string) string {
	t.Helper()
	resp, err := a.c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	for resp.StatusCode/100 == 3 {
		next, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		resp.Body.Close()
		if resp, err = a.c.Get(next.String()); err != nil {
			t.Fatal(err)
		}
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	login, err := oidcrptest.SignIn(resp, string(body), user)
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp, err = a.c.Do(login)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if loc == "" {
			t.Fatalf("the OP stopped at %s (%d)", resp.Request.URL, resp.StatusCode)
		}
		next, _ := resp.Request.URL.Parse(loc)
		if strings.HasPrefix(next.String(), opIssuer+"/") {
			return next.String()
		}
		login, _ = http.NewRequest(http.MethodGet, next.String(), nil)
	}
}

// Refusals, in RFC 6750's form: no token, a member's token, an unknown
// provider, a bad client or redirect URI, no PKCE.
func TestProviderStartRefusals(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	withProvider(t, s)
	guest, err := s.svc.CreateGuest(t.Context(), opIssuer, "app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	_, challenge := pkce("w")
	good := func(kv ...string) url.Values {
		f := url.Values{"provider": {"testidp"}, "client_id": {"app"}, "redirect_uri": {appCB}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				f.Del(kv[i])
			} else {
				f.Set(kv[i], kv[i+1])
			}
		}
		return f
	}
	for _, tc := range []struct {
		name, token string
		form        url.Values
		status      int
		challenge   string
	}{
		{"no token", "", good(), http.StatusUnauthorized, `Bearer realm="guest_auth"`},
		{"bad token", "x.y.z", good(), http.StatusUnauthorized, `error="invalid_token"`},
		{"unknown provider", guest.Tokens.AccessToken, good("provider", "nope"), http.StatusBadRequest, `error="invalid_request", error_description="There is no such provider`},
		{"unknown client", guest.Tokens.AccessToken, good("client_id", "nope"), http.StatusBadRequest, `error="invalid_request"`},
		{"unregistered redirect", guest.Tokens.AccessToken, good("redirect_uri", "https://evil.example/cb"), http.StatusBadRequest, `error="invalid_request"`},
		{"no PKCE", guest.Tokens.AccessToken, good("code_challenge", "", "code_challenge_method", ""), http.StatusBadRequest, "code_challenge (PKCE, S256) is required"},
		{"prompt", guest.Tokens.AccessToken, good("prompt", "none"), http.StatusBadRequest, "prompt and login_hint are not taken here"},
		{"another client", guest.Tokens.AccessToken, good("client_id", "other", "redirect_uri", otherCB), http.StatusBadRequest, "issued to another client"},
	} {
		r := s.providerStart(tc.token, tc.form)
		if r.status != tc.status || !strings.Contains(r.header.Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("%s: %d %q %s", tc.name, r.status, r.header.Get("WWW-Authenticate"), r.body)
		}
	}
	// A member's token.
	a := s.agent()
	if r := a.submit("/auth/signup", url.Values{"username": {"carol"}, "password": {"correct horse battery"}}); r.status != http.StatusSeeOther {
		t.Fatalf("sign up: %d %s", r.status, r.body)
	}
	member := a.codeFor(authorizeURL("app", appCB), appCB)
	verifier, _ := pkce("v")
	tok := s.redeem(url.Values{"code": {member}, "redirect_uri": {appCB}, "code_verifier": {verifier}, "client_id": {"app"}, "client_secret": {secretApp}})
	at, _ := tok.json(t)["access_token"].(string)
	if r := s.providerStart(at, good()); r.status != http.StatusBadRequest || !strings.Contains(r.header.Get("WWW-Authenticate"), "a member") {
		t.Errorf("a member's token: %d %q", r.status, r.header.Get("WWW-Authenticate"))
	}
}

package protocol_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
)

// Until the client and its redirect URI are valid, a refusal is an error
// page, never a redirect to the URI the request names.
func TestAuthorizeRefusedOnAPage(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	for _, c := range []struct {
		name, path, text string
	}{
		{"no client_id", authorizeURL("", appCB), "client_id"},
		{"unknown client", authorizeURL("nobody", appCB), "not known"},
		{"unregistered redirect", authorizeURL("app", "https://evil.example/cb"), "not registered"},
		{"redirect with a trailing slash", authorizeURL("app", appCB+"/"), "not registered"},
		{"redirect in another case", authorizeURL("app", "https://APP.example/cb"), "not registered"},
		{"redirect with a query added", authorizeURL("app", appCB+"?x=1"), "not registered"},
		{"another client's redirect", authorizeURL("app", otherCB), "not registered"},
		{"no redirect, two registered", authorizeURL("app", ""), "redirect_uri"},
		{"a client without redirect URIs", authorizeURL("bare", appCB), "not registered"},
		{"client_id twice", authorizeURL("app", appCB) + "&client_id=other", "more than once"},
		{"redirect_uri twice", authorizeURL("app", appCB) + "&redirect_uri=" + url.QueryEscape(appCB2), "more than once"},
		{"a resume unknown", protocol.PathAuthorize + "?resume=" + strings.Repeat("A", 43), "expired"},
		{"a resume malformed", protocol.PathAuthorize + "?resume=x", "expired"},
	} {
		r := a.get(c.path)
		if r.status != http.StatusBadRequest || r.location() != "" || !strings.Contains(r.body, c.text) ||
			!strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			t.Errorf("%s: %d %q %s; want a 400 page saying %q", c.name, r.status, r.location(), r.body, c.text)
		}
	}
}

// Once client and redirect URI are valid, a refusal goes back to the
// redirect URI with error, error_description, state and iss.
func TestAuthorizeRefusedToTheClient(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	for _, c := range []struct {
		name, path, redirect, code string
	}{
		{"no response_type", authorizeURL("app", appCB, "response_type", ""), appCB, "invalid_request"},
		{"response_type token", authorizeURL("app", appCB, "response_type", "token"), appCB, "unsupported_response_type"},
		{"response_type code id_token", authorizeURL("app", appCB, "response_type", "code id_token"), appCB, "unsupported_response_type"},
		{"response_mode fragment", authorizeURL("app", appCB, "response_mode", "fragment"), appCB, "invalid_request"},
		{"request object", authorizeURL("app", appCB, "request", "eyJ.x.y"), appCB, "request_not_supported"},
		{"request_uri", authorizeURL("app", appCB, "request_uri", "https://x"), appCB, "request_uri_not_supported"},
		{"PKCE plain", authorizeURL("app", appCB, "code_challenge_method", "plain"), appCB, "invalid_request"},
		{"PKCE method missing (plain)", authorizeURL("app", appCB, "code_challenge_method", ""), appCB, "invalid_request"},
		{"PKCE method without challenge", authorizeURL("app", appCB, "code_challenge", ""), appCB, "invalid_request"},
		{"PKCE challenge too short", authorizeURL("app", appCB, "code_challenge", "abc"), appCB, "invalid_request"},
		{"PKCE challenge not base64url", authorizeURL("app", appCB, "code_challenge", strings.Repeat("~", 43)), appCB, "invalid_request"},
		{"public client without PKCE", authorizeURL("spa", spaCB, "code_challenge", "", "code_challenge_method", ""), spaCB, "invalid_request"},
		{"unknown prompt", authorizeURL("app", appCB, "prompt", "bogus"), appCB, "invalid_request"},
		{"prompt none with login", authorizeURL("app", appCB, "prompt", "none login"), appCB, "invalid_request"},
		{"prompt create with login", authorizeURL("app", appCB, "prompt", "create login"), appCB, "invalid_request"},
		{"negative max_age", authorizeURL("app", appCB, "max_age", "-1"), appCB, "invalid_request"},
		{"nonce too long", authorizeURL("app", appCB, "nonce", strings.Repeat("n", 513)), appCB, "invalid_request"},
		{"state repeated", authorizeURL("app", appCB) + "&state=again", appCB, "invalid_request"},
		{"prompt none without a session", authorizeURL("app", appCB, "prompt", "none"), appCB, "login_required"},
		{"the registered query is kept", authorizeURL("app", appCB2, "response_type", "token"), appCB2, "unsupported_response_type"},
	} {
		q := callback(t, a.get(c.path), c.redirect)
		if q.Get("error") != c.code || q.Get("error_description") == "" || q.Get("code") != "" {
			t.Errorf("%s: %v; want error %s", c.name, q, c.code)
		}
		if q.Get("state") != "st-1" {
			t.Errorf("%s: state %q not sent back", c.name, q.Get("state"))
		}
	}
	// A state too long to be one is not echoed.
	q := callback(t, a.get(authorizeURL("app", appCB, "state", strings.Repeat("s", 4097))), appCB)
	if q.Get("error") != "invalid_request" || q.Has("state") {
		t.Errorf("overlong state: %v", q)
	}
	if a.c.Jar.Cookies(mustURL(s.srv.URL)) != nil {
		t.Error("a refused request left a session cookie")
	}
}

func mustURL(s string) *url.URL {
	u, _ := url.Parse(s)
	return u
}

// idClaims decodes an ID token's payload (its signature is the verifier's
// business; go-oidc checks it in the end-to-end tests).
func idClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// A visitor without a session goes through the sign-in page ("continue as
// a guest") and comes back with a code; the code gives a token set of a
// new session of the client, once: a replay is refused and ends that
// session.
func TestAuthorizeCodeFlowThroughThePages(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	verifier, _ := pkce("v")
	first := a.get(authorizeURL("spa", spaCB))
	signin := a.followToPage(first, "/auth/signin")
	back := returnTo(t, signin)
	if !strings.HasPrefix(back, protocol.PathAuthorize+"?resume=") || len(back) > 100 {
		t.Fatalf("return_to %q", back)
	}
	for _, link := range []string{`href="/auth/signup?return_to=` + url.QueryEscape(back), `href="/auth/guest?return_to=` + url.QueryEscape(back)} {
		if !strings.Contains(strings.ToLower(signin.body), strings.ToLower(link)) { // html/template writes %2f
			t.Fatalf("the sign-in page lacks %s: %s", link, signin.body)
		}
	}
	q := callback(t, a.signInAsGuest(first), spaCB)
	code := q.Get("code")
	if code == "" || q.Get("state") != "st-1" {
		t.Fatalf("callback: %v", q)
	}
	// The stored request is done: its URL gives no second code.
	if r := a.get(back); r.status != http.StatusBadRequest || !strings.Contains(r.body, "already completed") {
		t.Fatalf("resume again: %d %s", r.status, r.body)
	}

	tok := s.redeem(url.Values{"code": {code}, "client_id": {"spa"}, "redirect_uri": {spaCB}, "code_verifier": {verifier}})
	if tok.status != 200 {
		t.Fatalf("redeem: %d %s", tok.status, tok.body)
	}
	set := tok.json(t)
	id := idClaims(t, set["id_token"].(string))
	access := idClaims(t, set["access_token"].(string))
	if id["nonce"] != "n-1" || id["aud"].([]any)[0] != "spa" || id["auth_time"] == nil || id["sid"] != access["sid"] ||
		id["is_anonymous"] != true || set["scope"] != "openid profile" || set["token_type"] != "Bearer" {
		t.Fatalf("token set: %v\nID token: %v", set, id)
	}
	// The client's session is its own, not the browser's.
	page := a.get("/auth/account")
	if page.status != 200 || !strings.Contains(page.body, "Guest ") {
		t.Fatalf("the browser session is gone: %d %s", page.status, page.body)
	}
	info := s.userinfo(set["access_token"].(string))
	if info.status != 200 || info.json(t)["sub"] != id["sub"] {
		t.Fatalf("userinfo: %d %s", info.status, info.body)
	}
	refresh := s.post(protocol.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {set["refresh_token"].(string)}, "client_id": {"spa"}})
	if refresh.status != 200 {
		t.Fatalf("refresh: %d %s", refresh.status, refresh.body)
	}
	if _, ok := idClaims(t, refresh.json(t)["id_token"].(string))["nonce"]; ok {
		t.Fatal("a refreshed ID token carries the nonce")
	}
	next := refresh.json(t)

	// A replay: refused, and the session of the first redemption ends.
	again := s.redeem(url.Values{"code": {code}, "client_id": {"spa"}, "redirect_uri": {spaCB}, "code_verifier": {verifier}})
	if again.status != 400 || again.json(t)["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %s", again.status, again.body)
	}
	if r := s.post(protocol.PathToken, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next["refresh_token"].(string)}, "client_id": {"spa"}}); r.status != 400 {
		t.Fatalf("refresh after the replay: %d %s", r.status, r.body)
	}
	if r := s.userinfo(next["access_token"].(string)); r.status != 401 {
		t.Fatalf("access token after the replay: %d", r.status)
	}
	// The browser session is not the client's: it lives on.
	if page := a.get("/auth/account"); page.status != 200 {
		t.Fatalf("the browser session ended with the client's: %d", page.status)
	}
}

func (s *site) userinfo(token string) *reply {
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+protocol.PathUserInfoOAuth, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return (&agent{s: s, c: http.DefaultClient}).do(req)
}

// A visitor with a session, a guest's included, gets a code at once.
func TestAuthorizeWithASession(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	a.signInAsGuest(a.get(authorizeURL("app", appCB)))
	for _, c := range []struct {
		path, redirect string
	}{
		{authorizeURL("app", appCB), appCB},
		{authorizeURL("app", appCB2), appCB2},
		{authorizeURL("app", appCB, "prompt", "none"), appCB},
		{authorizeURL("app", appCB, "prompt", "consent"), appCB},
		{strings.Replace(authorizeURL("other", otherCB, "redirect_uri", ""), protocol.PathAuthorize, protocol.PathAuthorizeCasdoor, 1), otherCB},
		{authorizeURL("app", appCB, "max_age", "3600"), appCB},
	} {
		q := callback(t, a.get(c.path), c.redirect)
		if q.Get("code") == "" || q.Get("error") != "" {
			t.Errorf("%s: %v", c.path, q)
		}
	}
	// POST works as GET (OpenID Connect Core §3.1.2.1), answered 303.
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+protocol.PathAuthorize, strings.NewReader(strings.SplitN(authorizeURL("app", appCB), "?", 2)[1]))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := a.do(req)
	if r.status != http.StatusSeeOther || callback(t, r, appCB).Get("code") == "" {
		t.Fatalf("POST: %d %s", r.status, r.location())
	}
}

// signUp registers name through a sign-up page the agent was sent to and
// returns to where the page leads.
func (a *agent) signUp(r *reply, name string) *reply {
	a.s.t.Helper()
	page := a.followToPage(r, "/auth/signup")
	back := returnTo(a.s.t, page)
	up := a.submit("/auth/signup", url.Values{"username": {name}, "password": {"correct horse battery"}, "return_to": {back}})
	if up.status != http.StatusSeeOther || up.location() != back {
		a.s.t.Fatalf("sign-up: %d %s %s", up.status, up.location(), up.body)
	}
	return a.get(back)
}

// prompt=login asks for a new sign-in even with a session; coming back
// without one (a reload of the return URL) does not give a code. prompt=
// create opens the sign-up page, and a guest upgrading there counts as
// signing in.
func TestAuthorizePrompts(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	a := s.agent()
	// prompt=create without a session: sign up, then the code.
	q := callback(t, a.signUp(a.get(authorizeURL("app", appCB, "prompt", "create")), "olive"), appCB)
	if q.Get("code") == "" {
		t.Fatalf("prompt=create: %v", q)
	}
	// prompt=login with olive's session: the sign-in page, every time.
	r := a.get(authorizeURL("app", appCB, "prompt", "login", "login_hint", "olive"))
	page := a.followToPage(r, "/auth/signin")
	if !strings.Contains(page.body, `value="olive"`) {
		t.Fatalf("login_hint not filled in: %s", page.body)
	}
	back := returnTo(t, page)
	s.advance(2 * time.Second)
	again := a.get(back)
	if again.status != http.StatusSeeOther || !strings.HasPrefix(again.location(), "/auth/signin?") {
		t.Fatalf("resumed without signing in: %d %s", again.status, again.location())
	}
	in := a.submit("/auth/signin", url.Values{"username": {"olive"}, "password": {"correct horse battery"}, "return_to": {back}})
	if in.status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", in.status, in.body)
	}
	if q := callback(t, a.get(back), appCB); q.Get("code") == "" {
		t.Fatalf("after signing in: %v", q)
	}
	// max_age past the sign-in: the same as login.
	s.advance(time.Minute)
	r = a.get(authorizeURL("app", appCB, "max_age", "30"))
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), "/auth/signin?") {
		t.Fatalf("max_age exceeded: %d %s", r.status, r.location())
	}
	// prompt=none when a sign-in is needed: login_required.
	if q := callback(t, a.get(authorizeURL("app", appCB, "prompt", "none", "max_age", "30")), appCB); q.Get("error") != "login_required" {
		t.Fatalf("prompt=none, max_age exceeded: %v", q)
	}

	// A guest asked to sign in who signs up instead keeps its account and
	// gets the code.
	g := s.agent()
	g.signInAsGuest(g.get(authorizeURL("app", appCB)))
	r = g.get(authorizeURL("app", appCB, "prompt", "login"))
	signin := g.followToPage(r, "/auth/signin")
	back = returnTo(t, signin)
	up := g.submit("/auth/signup", url.Values{"username": {"pat"}, "password": {"correct horse battery"}, "return_to": {back}})
	if up.status != http.StatusSeeOther {
		t.Fatalf("guest sign-up: %d %s", up.status, up.body)
	}
	if q := callback(t, g.get(back), appCB); q.Get("code") == "" {
		t.Fatalf("after the guest signed up: %v", q)
	}
	// prompt=create with a guest session: the sign-up page, which
	// upgrades it.
	h := s.agent()
	h.signInAsGuest(h.get(authorizeURL("app", appCB)))
	if q := callback(t, h.signUp(h.get(authorizeURL("app", appCB, "prompt", "create")), "quinn"), appCB); q.Get("code") == "" {
		t.Fatalf("guest prompt=create: %v", q)
	}
}

// Requests that store a record for a visitor without a session spend the
// challenge limits before the write: of 60 at once with a budget of 5,
// five go to the sign-in page and the others go back to the client with
// temporarily_unavailable. A visitor with a session is not limited.
func TestAuthorizeLimitedBeforeTheWrite(t *testing.T) {
	t.Parallel()
	s := newSite(t, func(c *accounts.Config) {
		c.Challenges = accounts.ChallengeLimits{PerIP: accounts.Limit{Burst: 5, Interval: time.Hour}}
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	counts := map[string]int{}
	for range 60 {
		wg.Go(func() {
			r := s.agent().get(authorizeURL("app", appCB))
			what := r.location()
			if strings.HasPrefix(what, "/auth/signin?") {
				what = "signin"
			} else if u, err := url.Parse(what); err == nil {
				what = u.Query().Get("error")
			}
			mu.Lock()
			counts[what]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if counts["signin"] != 5 || counts["temporarily_unavailable"] != 55 {
		t.Fatalf("outcomes %v, want 5 signin and 55 temporarily_unavailable", counts)
	}
	// A session needs no record: codes are not limited by it.
	b := s.newSession(t)
	for range 10 {
		if q := callback(t, b.get(authorizeURL("app", appCB)), appCB); q.Get("code") == "" {
			t.Fatalf("with a session: %v", q)
		}
	}
}

// newSession is an agent signed in as a guest without the authorization
// endpoint.
func (s *site) newSession(t *testing.T) *agent {
	a := s.agent()
	if r := a.submit("/auth/guest", url.Values{"return_to": {"/"}}); r.status != http.StatusSeeOther {
		t.Fatalf("guest: %d %s", r.status, r.body)
	}
	return a
}

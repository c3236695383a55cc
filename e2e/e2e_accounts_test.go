package e2e

// Integration tests of accounts and sessions: upgrade, password sign-in,
// refresh rotation, revocation, logout and UserInfo, over real HTTP.

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// updateUser calls the seeds' upgrade API with a JSON body.
func (s *server) updateUser(token string, body map[string]string) *response {
	s.t.Helper()
	return s.postJSON("/api/update-user", body, "Authorization", "Bearer "+token)
}

func (s *server) signIn(username, password string) *response {
	s.t.Helper()
	return s.postForm("/oauth/token", url.Values{"grant_type": {"password"}, "username": {username}, "password": {password}},
		"Authorization", basicAuth("demo-app", "demo-secret"))
}

func (s *server) refresh(rt string) *response {
	s.t.Helper()
	return s.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}},
		"Authorization", basicAuth("demo-app", "demo-secret"))
}

func decodeTokens(t testing.TB, r *response) tokenSet {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("token request: %d %s", r.Status, r.Body)
	}
	var ts tokenSet
	if err := json.Unmarshal(r.Body, &ts); err != nil {
		t.Fatal(err)
	}
	return ts
}

func wantEnvelope(t testing.TB, r *response, status int, wantStatus string) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	m := r.JSON(t)
	if m["status"] != wantStatus {
		t.Fatalf("envelope status %v, want %q: %s", m["status"], wantStatus, r.Body)
	}
	if _, ok := m["msg"]; !ok {
		t.Fatalf("envelope without msg: %s", r.Body)
	}
	return m
}

func userinfo(t testing.TB, s *server, token string) map[string]any {
	t.Helper()
	r := s.get("/api/userinfo", token)
	if r.Status != http.StatusOK {
		t.Fatalf("userinfo: %d %s", r.Status, r.Body)
	}
	return r.JSON(t)
}

func TestUpgradeByNameKeepsIDAndShowsEverywhere(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ts := s.createGuest()
	before := userinfo(t, s, ts.AccessToken)
	if before["is_anonymous"] != true || before["tag"] != "guest-user" || !strings.HasPrefix(before["name"].(string), "guest_") {
		t.Fatalf("userinfo before upgrade: %v", before)
	}

	m := wantEnvelope(t, s.updateUser(ts.AccessToken, map[string]string{"name": "alice"}), http.StatusOK, "ok")
	if m["data"] != "Affected" {
		t.Fatalf("update-user data: %v", m)
	}
	after := userinfo(t, s, ts.AccessToken) // the same, old access token
	if after["sub"] != before["sub"] || after["name"] != "alice" || after["preferred_username"] != "alice" || after["tag"] != "normal-user" || after["is_anonymous"] != false {
		t.Fatalf("userinfo after upgrade: %v", after)
	}
	h := seen(t, s.get("/app", ts.AccessToken))
	if h.Get("X-Auth-User-Id") != before["sub"] || h.Get("X-Auth-User-Name") != "alice" || h.Get("X-Auth-User-Tag") != "normal-user" || h.Get("X-Auth-User-Anonymous") != "false" {
		t.Fatalf("proxy headers after upgrade with the old token: %v", h)
	}
	acct := wantEnvelope(t, s.get("/api/get-account", ts.AccessToken), http.StatusOK, "ok")["data"].(map[string]any)
	if acct["id"] != before["sub"] || acct["name"] != "alice" || acct["tag"] != "normal-user" || strings.Contains(string(s.get("/api/get-account", ts.AccessToken).Body), "argon2") {
		t.Fatalf("get-account: %v", acct)
	}
	// Refreshed tokens carry the new state too.
	r := decodeTokens(t, s.refresh(ts.RefreshToken))
	_, claims := jwtParts(t, r.AccessToken)
	if claims["tag"] != "normal-user" || claims["is_anonymous"] != false || claims["name"] != "alice" || claims["sub"] != before["sub"] {
		t.Fatalf("refreshed access token claims: %v", claims)
	}
	// No password was set, so there is still no password sign-in.
	if r := s.signIn("alice", "anything-at-all"); r.Status != http.StatusBadRequest || r.JSON(t)["error"] != "invalid_grant" {
		t.Fatalf("sign-in without a password: %d %s", r.Status, r.Body)
	}
}

func TestUpgradeByPasswordOnlyThenSignInAsGuestName(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ts := s.createGuest()
	name := userinfo(t, s, ts.AccessToken)["name"].(string)
	wantEnvelope(t, s.updateUser(ts.AccessToken, map[string]string{"password": "pw-for-guest"}), http.StatusOK, "ok")
	info := userinfo(t, s, ts.AccessToken)
	if info["name"] != name || info["tag"] != "normal-user" {
		t.Fatalf("after password-only upgrade: %v", info)
	}
	in := decodeTokens(t, s.signIn(name, "pw-for-guest"))
	if userinfo(t, s, in.AccessToken)["sub"] != info["sub"] {
		t.Fatal("sign-in reached another user")
	}
}

func TestUpgradeByNameAndPasswordForm(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ts := s.createGuest()
	r := s.postForm("/api/update-user", url.Values{"name": {"Bob"}, "password": {"bob-password"}}, "Authorization", "Bearer "+ts.AccessToken)
	wantEnvelope(t, r, http.StatusOK, "ok")
	in := decodeTokens(t, s.signIn("bob", "bob-password")) // names match case-insensitively
	if userinfo(t, s, in.AccessToken)["name"] != "Bob" {
		t.Fatal("signed in as someone else")
	}
}

func TestUpgradeRefusals(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	a, b := s.createGuest(), s.createGuest()
	wantEnvelope(t, s.updateUser(a.AccessToken, map[string]string{"name": "taken"}), http.StatusOK, "ok")

	cases := []struct {
		body   map[string]string
		status int
	}{
		{map[string]string{"name": "guest_fake"}, http.StatusBadRequest},
		{map[string]string{"name": "Guest_Fake"}, http.StatusBadRequest},
		{map[string]string{"name": "TAKEN"}, http.StatusConflict},
		{map[string]string{"name": "no spaces"}, http.StatusBadRequest},
		{map[string]string{"password": "short"}, http.StatusBadRequest},
		{map[string]string{}, http.StatusBadRequest},
	}
	for _, c := range cases {
		wantEnvelope(t, s.updateUser(b.AccessToken, c.body), c.status, "error")
	}
	info := userinfo(t, s, b.AccessToken)
	if info["tag"] != "guest-user" || !strings.HasPrefix(info["name"].(string), "guest_") {
		t.Fatalf("refused updates changed the user: %v", info)
	}
	// Authentication failures keep the envelope and add the RFC 6750 challenge.
	r := s.updateUser("not-a-token", map[string]string{"name": "zed"})
	wantEnvelope(t, r, http.StatusUnauthorized, "error")
	if !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("challenge: %q", r.Header.Get("WWW-Authenticate"))
	}
	wantEnvelope(t, s.do(http.MethodPost, "/api/update-user", strings.NewReader(`{"name":"zed"}`), "Content-Type", "application/json"), http.StatusUnauthorized, "error")
	wantEnvelope(t, s.get("/api/update-user", b.AccessToken), http.StatusMethodNotAllowed, "error")
	wantEnvelope(t, s.do(http.MethodPost, "/api/update-user", strings.NewReader(`{"name":`), "Content-Type", "application/json", "Authorization", "Bearer "+b.AccessToken), http.StatusBadRequest, "error")
}

func TestConcurrentUpgradesOverHTTP(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	const n = 8
	guests := make([]tokenSet, n)
	for i := range guests {
		guests[i] = s.createGuest()
	}
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = s.updateUser(guests[i].AccessToken, map[string]string{"name": "only-one"}).Status
		}()
	}
	wg.Wait()
	won := 0
	for i, st := range statuses {
		switch st {
		case http.StatusOK:
			won++
		case http.StatusConflict:
			if userinfo(t, s, guests[i].AccessToken)["tag"] != "guest-user" {
				t.Fatalf("loser %d upgraded", i)
			}
		default:
			t.Fatalf("status %d", st)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent upgrades to one name won: %v", won, n, statuses)
	}
}

func TestSignInErrorsAreIdentical(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	guest := s.createGuest()
	guestName := userinfo(t, s, guest.AccessToken)["name"].(string)
	user := s.createGuest()
	wantEnvelope(t, s.updateUser(user.AccessToken, map[string]string{"name": "erin", "password": "erin-password"}), http.StatusOK, "ok")

	var bodies []string
	var took []time.Duration
	for _, c := range [][2]string{{guestName, "some-password"}, {"no-such-user", "some-password"}, {"erin", "wrong-password"}} {
		start := time.Now()
		r := s.signIn(c[0], c[1])
		took = append(took, time.Since(start))
		if r.Status != http.StatusBadRequest {
			t.Fatalf("sign-in %v: %d %s", c, r.Status, r.Body)
		}
		bodies = append(bodies, string(r.Body))
	}
	if bodies[0] != bodies[1] || bodies[1] != bodies[2] || !strings.Contains(bodies[0], "invalid_grant") {
		t.Fatalf("sign-in failures differ: %q", bodies)
	}
	// Every failure verifies a password hash; none answers instantly.
	for i, d := range took {
		if d < 5*time.Millisecond {
			t.Fatalf("failure %d answered in %v: no hash was checked", i, d)
		}
	}
	decodeTokens(t, s.signIn("erin", "erin-password"))
}

func TestSignInThrottledWithRetryAfter(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "signin_limit account 2 1h")
	u := s.createGuest()
	wantEnvelope(t, s.updateUser(u.AccessToken, map[string]string{"name": "frank", "password": "frank-password"}), http.StatusOK, "ok")
	for range 2 {
		if r := s.signIn("frank", "nope-nope"); r.Status != http.StatusBadRequest {
			t.Fatalf("failure: %d %s", r.Status, r.Body)
		}
	}
	r := s.signIn("frank", "frank-password")
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" || r.JSON(t)["error"] == "" {
		t.Fatalf("throttled sign-in: %d %v %s", r.Status, r.Header, r.Body)
	}
	if !s.HasLog("signin.throttled") {
		t.Fatal("no signin.throttled event logged")
	}
	// The refusal reaches the store's daily counters (the dashboard's
	// limit row) with the next flush, within 10 s.
	deadline := time.Now().Add(20 * time.Second)
	for {
		w := s.adminOK("GET", "/guest_auth/dashboard", nil)["windows"].([]any)[0].(map[string]any)
		hits, _ := w["limit_hits"].(map[string]any)
		if hits["signin"] == float64(1) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dashboard's limit hits after 20 s: %v", w["limit_hits"])
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestRefreshRotationAndReuseOverHTTP(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ts := s.createGuest()
	r1 := decodeTokens(t, s.refresh(ts.RefreshToken))
	if r1.RefreshToken == ts.RefreshToken || r1.AccessToken == ts.AccessToken {
		t.Fatal("refresh did not rotate")
	}
	if s.get("/app", r1.AccessToken).Status != http.StatusOK {
		t.Fatal("refreshed access token refused")
	}
	// Reuse of the first refresh token: invalid_grant, and the session ends.
	r := s.refresh(ts.RefreshToken)
	if r.Status != http.StatusBadRequest || r.JSON(t)["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %s", r.Status, r.Body)
	}
	for _, at := range []string{ts.AccessToken, r1.AccessToken} {
		if r := s.get("/app", at); r.Status != http.StatusUnauthorized {
			t.Fatalf("access token of a revoked session: %d", r.Status)
		}
	}
	if r := s.refresh(r1.RefreshToken); r.Status != http.StatusBadRequest {
		t.Fatalf("newest refresh token after reuse: %d", r.Status)
	}
	if !s.HasLog("refresh.reuse_detected") {
		t.Fatal("no refresh.reuse_detected event logged")
	}
}

func TestRevokeAndLogoutEndSessionAtProxy(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "require any")
	a, b, c := s.createGuest(), s.createGuest(), s.createGuest()

	// RFC 7009 with a refresh token, another with an access token.
	revoke := func(token, id, secret string) *response {
		return s.postForm("/oauth/revoke", url.Values{"token": {token}}, "Authorization", basicAuth(id, secret))
	}
	if r := revoke(a.RefreshToken, "other-app", "other-secret"); r.Status != http.StatusBadRequest {
		t.Fatalf("revoking another client's token: %d %s", r.Status, r.Body)
	}
	if s.get("/app", a.AccessToken).Status != http.StatusOK {
		t.Fatal("refused revocation ended the session")
	}
	if r := revoke(a.RefreshToken, "demo-app", "demo-secret"); r.Status != http.StatusOK {
		t.Fatalf("revoke refresh token: %d %s", r.Status, r.Body)
	}
	if r := revoke(b.AccessToken, "demo-app", "demo-secret"); r.Status != http.StatusOK {
		t.Fatalf("revoke access token: %d %s", r.Status, r.Body)
	}
	if r := revoke("garbage", "demo-app", "demo-secret"); r.Status != http.StatusOK {
		t.Fatalf("revoke garbage: %d", r.Status)
	}
	if r := revoke("garbage", "demo-app", "wrong"); r.Status != http.StatusUnauthorized {
		t.Fatalf("revoke with a wrong secret: %d", r.Status)
	}
	wantEnvelope(t, s.do(http.MethodPost, "/api/logout", nil, "Authorization", "Bearer "+c.AccessToken), http.StatusOK, "ok")
	for name, ts := range map[string]tokenSet{"revoked refresh": a, "revoked access": b, "logged out": c} {
		r := s.get("/app", ts.AccessToken)
		if r.Status != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_token") {
			t.Fatalf("%s: proxy answered %d", name, r.Status)
		}
		if r := s.refresh(ts.RefreshToken); r.Status != http.StatusBadRequest {
			t.Fatalf("%s: refresh answered %d", name, r.Status)
		}
	}
	if !s.HasLog("session.revoked") {
		t.Fatal("no session.revoked event logged")
	}
}

func TestPasswordChangeEndsOtherSessionsOverHTTP(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	g := s.createGuest()
	wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"name": "gina", "password": "gina-password-1"}), http.StatusOK, "ok")
	other := decodeTokens(t, s.signIn("gina", "gina-password-1"))
	wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"password": "gina-password-2"}), http.StatusBadRequest, "error")
	wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"password": "gina-password-2", "oldPassword": "gina-password-1"}), http.StatusOK, "ok")
	if r := s.get("/app", other.AccessToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("other session after password change: %d", r.Status)
	}
	if r := s.get("/app", g.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("changing session after password change: %d", r.Status)
	}
}

// A standard OIDC client library: discovery, ID token verification,
// UserInfo and refresh through golang.org/x/oauth2.
func TestStandardOIDCClient(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ctx := context.Background()
	provider, err := oidc.NewProvider(ctx, s.Base)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	ts := s.createGuest()
	idt, err := provider.Verifier(&oidc.Config{ClientID: "demo-app"}).Verify(ctx, ts.IDToken)
	if err != nil {
		t.Fatalf("ID token rejected by go-oidc: %v", err)
	}
	var claims struct {
		Tag         string `json:"tag"`
		IsAnonymous bool   `json:"is_anonymous"`
	}
	if err := idt.Claims(&claims); err != nil || claims.Tag != "guest-user" || !claims.IsAnonymous {
		t.Fatalf("ID token claims: %+v %v", claims, err)
	}

	tok := &oauth2.Token{AccessToken: ts.AccessToken, RefreshToken: ts.RefreshToken, TokenType: "Bearer", Expiry: time.Now().Add(-time.Minute)}
	conf := &oauth2.Config{ClientID: "demo-app", ClientSecret: "demo-secret", Endpoint: provider.Endpoint(), Scopes: []string{oidc.ScopeOpenID}}
	src := conf.TokenSource(ctx, tok) // expired, so the first Token() refreshes
	fresh, err := src.Token()
	if err != nil {
		t.Fatalf("refresh through x/oauth2: %v", err)
	}
	if fresh.AccessToken == ts.AccessToken || fresh.RefreshToken == ts.RefreshToken {
		t.Fatal("x/oauth2 refresh did not rotate")
	}
	info, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(fresh))
	if err != nil {
		t.Fatalf("UserInfo: %v", err)
	}
	var extra struct {
		IsAnonymous bool   `json:"is_anonymous"`
		Tag         string `json:"tag"`
	}
	if err := info.Claims(&extra); err != nil || info.Subject != idt.Subject || !extra.IsAnonymous || extra.Tag != "guest-user" {
		t.Fatalf("UserInfo: %+v %+v %v", info, extra, err)
	}
}

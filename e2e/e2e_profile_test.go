package e2e

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
)

// A password change answers, in the update-user envelope, a fresh token set
// for the caller's session; the session's previous refresh token is dead.
func TestPasswordChangeReissuesTokensOverHTTP(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	g := s.createGuest()
	// Setting the first password re-issues nothing.
	up := wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"name": "hugo", "password": "hugo-password-1"}), http.StatusOK, "ok")
	if _, ok := up["tokens"]; ok {
		t.Fatalf("upgrade answered tokens: %v", up)
	}
	// Renaming an account with a password needs the password.
	r := s.updateUser(g.AccessToken, map[string]string{"name": "victor"})
	if m := wantEnvelope(t, r, http.StatusBadRequest, "error"); m["data"] != "wrong_password" {
		t.Fatalf("rename without oldPassword: %v", m)
	}

	m := wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"password": "hugo-password-2", "oldPassword": "hugo-password-1"}), http.StatusOK, "ok")
	if m["data"] != "Affected" || m["data2"].(map[string]any)["name"] != "hugo" {
		t.Fatalf("envelope: %v", m)
	}
	raw, _ := json.Marshal(m["tokens"])
	var ts tokenSet
	if err := json.Unmarshal(raw, &ts); err != nil || ts.AccessToken == "" || ts.IDToken == "" || ts.TokenType != "Bearer" || ts.ExpiresIn <= 0 || ts.RefreshToken == "" || ts.RefreshToken == g.RefreshToken {
		t.Fatalf("re-issued tokens: %s (%v)", raw, err)
	}
	if r := s.get("/app", ts.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("re-issued access token at the proxy: %d", r.Status)
	}
	next := decodeTokens(t, s.refresh(ts.RefreshToken))
	if r := s.refresh(g.RefreshToken); r.Status != http.StatusBadRequest || r.JSON(t)["error"] != "invalid_grant" {
		t.Fatalf("old refresh token: %d %s", r.Status, r.Body)
	}
	// Presenting it was reuse: the session is over.
	if r := s.get("/app", next.AccessToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("session after reuse of the old refresh token: %d", r.Status)
	}
}

// Name probes are throttled (409s count) and answered 429 with Retry-After
// in Casdoor's envelope; reserved names are refused without spending a try.
func TestNameProbesThrottledOverHTTP(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "name_change_limit ip 4 1h\n\t\treserved_names default acme")
	a, b := s.createGuest(), s.createGuest()
	wantEnvelope(t, s.updateUser(a.AccessToken, map[string]string{"name": "taken"}), http.StatusOK, "ok")
	for _, name := range []string{"ACME", "admin"} {
		if m := wantEnvelope(t, s.updateUser(b.AccessToken, map[string]string{"name": name}), http.StatusBadRequest, "error"); m["data"] != "invalid_name" {
			t.Fatalf("reserved %q: %v", name, m)
		}
	}
	for range 3 {
		wantEnvelope(t, s.updateUser(b.AccessToken, map[string]string{"name": "taken"}), http.StatusConflict, "error")
	}
	r := s.updateUser(b.AccessToken, map[string]string{"name": "free-name"})
	m := wantEnvelope(t, r, http.StatusTooManyRequests, "error")
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 3600 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if m["msg"] == "" {
		t.Fatalf("429 envelope: %v", m)
	}
	if got := s.scrape(t, `caddy_guest_auth_rate_limited_total{limit="name"}`); got != 1 {
		t.Fatalf("rate_limited_total{limit=name} = %v", got)
	}
	if info := userinfo(t, s, b.AccessToken); info["tag"] != "guest-user" {
		t.Fatalf("throttled rename changed the user: %v", info)
	}
}

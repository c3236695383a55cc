package e2e

import (
	"net/http"
	"testing"
)

// Access tokens refused by the API endpoints (account API envelope, OIDC
// UserInfo) are counted like those refused at the proxy.
func TestAPITokenRejectionsCounted(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	const series = `caddy_guest_auth_token_verification_failures_total{reason="malformed"}`
	before := s.scrape(t, series)
	if r := s.get("/api/get-account", "not-a-jwt"); r.Status != http.StatusUnauthorized {
		t.Fatalf("get-account: %d %s", r.Status, r.Body)
	}
	if r := s.get("/api/userinfo", "not-a-jwt"); r.Status != http.StatusUnauthorized {
		t.Fatalf("userinfo: %d %s", r.Status, r.Body)
	}
	if r := s.updateUser("not-a-jwt", map[string]string{"name": "x"}); r.Status != http.StatusUnauthorized {
		t.Fatalf("update-user: %d %s", r.Status, r.Body)
	}
	if got := s.scrape(t, series); got != before+3 {
		t.Fatalf("%s = %v, want %v", series, got, before+3)
	}
}

// A throttled old-password check is a rate-limited request like any other.
func TestOldPasswordThrottleCounted(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "signin_limit device 2 1h")
	g := s.createGuest()
	wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"name": "wren", "password": "first-password-1"}), http.StatusOK, "ok")
	const series = `caddy_guest_auth_rate_limited_total{limit="signin"}`
	before := s.scrape(t, series)
	for range 2 {
		wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"password": "second-password-2", "oldPassword": "wrong-password"}), http.StatusBadRequest, "error")
	}
	r := s.updateUser(g.AccessToken, map[string]string{"password": "second-password-2", "oldPassword": "wrong-password"})
	wantEnvelope(t, r, http.StatusTooManyRequests, "error")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	if got := s.scrape(t, series); got != before+1 {
		t.Fatalf("%s = %v, want %v", series, got, before+1)
	}
}

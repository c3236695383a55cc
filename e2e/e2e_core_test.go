package e2e

import (
	"net/http"
	"testing"
)

func TestGuestCreationAndIdentityHeaders(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ts := s.createGuest()
	if ts.TokenType != "Bearer" || ts.Scope != "openid" || ts.AccessToken == "" || ts.IDToken == "" || ts.RefreshToken == "" {
		t.Fatalf("token response shape: %+v", ts)
	}
	resp := s.get("/app", ts.AccessToken, "x_auth_user_id", "spoofed", "X-AUTH-USER-TAG", "normal-user")
	if resp.Status != http.StatusOK {
		t.Fatalf("proxied request: %d %s", resp.Status, resp.Body)
	}
	h := s.Upstream.Headers()
	if h.Get("X-Auth-User-Tag") != "guest-user" || h.Get("X-Auth-User-Anonymous") != "true" {
		t.Fatalf("identity headers: %v", h)
	}
	if _, ok := h["X_auth_user_id"]; ok {
		t.Fatalf("spoofed underscore header reached the upstream: %v", h)
	}
	if got := h.Values("X-Auth-User-Tag"); len(got) != 1 {
		t.Fatalf("tag header values: %q", got)
	}
}

package caddymodule_test

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
)

// Caddyfile.example, the README's demo, runs as written: only its ports and
// admin address are replaced, so tests can run in parallel.
func TestCaddyfileExample(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t)
	demoPort := freePort(t)
	cfg := string(src)
	for old, repl := range map[string]string{
		"{$GUEST_AUTH_ADMIN:localhost:2019}": s.Admin,
		"localhost:8080":                     fmt.Sprintf("localhost:%d", s.Port),
		"localhost:9080":                     fmt.Sprintf("localhost:%d", demoPort),
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("Caddyfile.example no longer contains %q", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	s.Start(cfg)
	s.Base = fmt.Sprintf("http://localhost:%d", s.Port)

	ts := s.createGuest()
	resp := s.get("/", ts.AccessToken, "X-Auth-User-Tag", "normal-user")
	if resp.Status != http.StatusOK {
		t.Fatalf("demo app: %d %s", resp.Status, resp.Body)
	}
	echo := resp.JSON(t)
	_, claims := jwtParts(t, ts.AccessToken)
	if echo["X-Auth-User-Id"] != claims["sub"] || echo["X-Auth-User-Tag"] != "guest-user" || echo["X-Auth-User-Anonymous"] != "true" || echo["X-Auth-User-Name"] != claims["name"] {
		t.Fatalf("demo upstream echoed %v", echo)
	}
	if r := s.get("/", ""); r.Status != http.StatusOK || r.JSON(t)["X-Auth-User-Id"] != "" {
		t.Fatalf("demo app without a token: %d %s", r.Status, r.Body)
	}
	// A page load in a browser gets a guest and its cookie at once; the
	// members area sends it to sign-up.
	v := newVisitor(t, s)
	if page := v.page("/").JSON(t); page["X-Auth-User-Id"] == "" || page["X-Auth-User-Tag"] != "guest-user" || v.session() == nil {
		t.Fatalf("demo page load: %v %v", page, v.session())
	}
	if r := v.page("/members/"); r.Status != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/auth/signup?") {
		t.Fatalf("demo members area: %d %q", r.Status, r.Header.Get("Location"))
	}
	if r := v.page("/auth/signup"); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `autocomplete="new-password"`) {
		t.Fatalf("demo signup page: %d", r.Status)
	}
	// The mobile client is public: the key-pair grant only.
	r := s.postJSON("/oauth/token", map[string]string{"grant_type": "authorization_code", "client_id": "mobile-app", "code": "guest-user"})
	if r.Status == http.StatusOK {
		t.Fatalf("public client created a code guest: %s", r.Body)
	}
}

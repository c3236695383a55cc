package e2e

import (
	"encoding/base64"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// exampleVar matches the environment variables Caddyfile.example reads: when
// the Caddyfile is parsed ({$NAME:default}) or as a request is served
// ({env.NAME}).
var exampleVar = regexp.MustCompile(`\{\$(GUEST_AUTH_[A-Z_]+)(?::[^}]*)?\}|\{env\.(GUEST_AUTH_[A-Z_]+)\}`)

// readExample reads Caddyfile.example and checks that its ports and admin
// address are set only through the environment variables it documents (in
// its header and in the README), so the demo can be moved without editing.
func readExample(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var header, config strings.Builder
	for line := range strings.Lines(string(src)) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			header.WriteString(line)
		} else {
			config.WriteString(line)
		}
	}
	vars := map[string]bool{}
	for _, m := range exampleVar.FindAllStringSubmatch(config.String(), -1) {
		vars[m[1]+m[2]] = true
	}
	for _, want := range []string{"GUEST_AUTH_PORT", "GUEST_AUTH_UPSTREAM_PORT", "GUEST_AUTH_UPSTREAM", "GUEST_AUTH_ADMIN"} {
		if !vars[want] {
			t.Errorf("Caddyfile.example does not read %s", want)
		}
	}
	for v := range vars {
		if !strings.Contains(header.String(), v) || !strings.Contains(string(readme), v) {
			t.Errorf("%s is read by Caddyfile.example but not documented in its comments and the README", v)
		}
	}
	rest := exampleVar.ReplaceAllString(config.String(), "")
	for _, port := range []string{"8080", "9080", "2019"} {
		if strings.Contains(rest, port) {
			t.Errorf("Caddyfile.example names %s outside an environment variable's default", port)
		}
	}
	if t.Failed() {
		t.FailNow() // not started: it could take ports other tests use
	}
	return string(src)
}

// Caddyfile.example, the README's demo, runs as written; its ports and admin
// address are moved with the environment variables it documents, so tests
// can run in parallel.
func TestCaddyfileExample(t *testing.T) {
	t.Parallel()
	src := readExample(t)
	s := newServer(t)
	s.Env = []string{
		"GUEST_AUTH_PORT=" + strconv.Itoa(s.Port),
		"GUEST_AUTH_UPSTREAM_PORT=" + strconv.Itoa(freePort(t)),
		"GUEST_AUTH_ADMIN=" + s.Admin,
		"GUEST_AUTH_UPSTREAM=", // the demo upstream, whatever this environment says
	}
	s.Start(src)
	s.Base = "http://localhost:" + strconv.Itoa(s.Port)

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
	if claims["iss"] != s.Base {
		t.Fatalf("issuer %v, want %s (GUEST_AUTH_PORT)", claims["iss"], s.Base)
	}
	if r := s.get("/", ""); r.Status != http.StatusOK || r.JSON(t)["X-Auth-User-Id"] != "" {
		t.Fatalf("demo app without a token: %d %s", r.Status, r.Body)
	}
	// A page load in a browser gets a guest and its cookie at once (the
	// demo upstream's page: e2e_demo_test.go); the members area sends
	// it to sign-up.
	v := newVisitor(t, s)
	if page := v.page("/"); !strings.Contains(string(page.Body), "<dd><code>guest-user</code></dd>") || v.session() == nil {
		t.Fatalf("demo page load: %s %v", page.Body, v.session())
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
	// demo-app manages users (Casdoor's user API); demo-spa makes Authgear
	// web anonymous users; the app's origin may call the token endpoint.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("demo-app:demo-secret"))
	if r := s.get("/api/get-user?id=built-in/"+claims["name"].(string), "", "Authorization", basic); r.Status != http.StatusOK || r.JSON(t)["status"] != "ok" {
		t.Fatalf("demo-app's get-user: %d %s", r.Status, r.Body)
	}
	if r := s.postJSON("/api/anonymous_user/signup", map[string]string{"client_id": "demo-spa", "session_type": "refresh_token"}); r.Status != http.StatusOK {
		t.Fatalf("demo-spa's anonymous sign-up: %d %s", r.Status, r.Body)
	}
	pre := s.do(http.MethodOptions, "/oauth/token", nil, "Origin", "http://localhost:3000", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	if pre.Header.Get("Access-Control-Allow-Origin") != "http://localhost:3000" {
		t.Fatalf("CORS preflight from the demo app's origin: %d %v", pre.Status, pre.Header)
	}
}

// GUEST_AUTH_UPSTREAM puts the demo's guest_auth in front of another app.
func TestCaddyfileExampleOwnUpstream(t *testing.T) {
	t.Parallel()
	src := readExample(t)
	s := newServer(t)
	s.Env = []string{
		"GUEST_AUTH_PORT=" + strconv.Itoa(s.Port),
		"GUEST_AUTH_UPSTREAM_PORT=" + strconv.Itoa(freePort(t)),
		"GUEST_AUTH_ADMIN=" + s.Admin,
		"GUEST_AUTH_UPSTREAM=" + strings.TrimPrefix(s.Upstream.URL, "http://"),
	}
	s.Start(src)
	s.Base = "http://localhost:" + strconv.Itoa(s.Port)

	ts := s.createGuest()
	if r := s.get("/", ts.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("own app: %d %s", r.Status, r.Body)
	}
	_, claims := jwtParts(t, ts.AccessToken)
	if s.Upstream.Hits() != 1 || s.Upstream.Headers().Get("X-Auth-User-Id") != claims["sub"] {
		t.Fatalf("own app saw %d requests, identity %q", s.Upstream.Hits(), s.Upstream.Headers().Get("X-Auth-User-Id"))
	}
}

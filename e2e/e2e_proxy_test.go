package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// spoofs are client-sent identity headers in many spellings, as raw keys.
var spoofs = []string{
	"x_auth_user_id", "spoof-id-1",
	"X-AUTH-USER-TAG", "normal-user",
	"X_Auth_User_Anonymous", "false",
	"x-auth-user-name", "spoof-admin",
	"X-Auth-User-Id", "spoof-id-2",
	"X_AUTH_USER_NAME", "spoof-root",
	"x-Auth_user-TAG", "normal-user",
	"x-auth-user-anonymous", "false",
	"X-Auth-User-Id", "spoof-id-3",
}

// noSpoofValues fails if any spoofed value reached the upstream.
func noSpoofValues(t *testing.T, h http.Header) {
	t.Helper()
	for k, vs := range h {
		for _, v := range vs {
			if strings.HasPrefix(v, "spoof") {
				t.Fatalf("spoofed value %s: %q reached the upstream: %v", k, v, h)
			}
		}
	}
}

// wantRefused checks a 401 invalid_token answer that never reached the upstream.
func wantRefused(t *testing.T, s *server, resp *response, hitsBefore int) {
	t.Helper()
	if resp.Status != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401: %s", resp.Status, resp.Body)
	}
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, `Bearer realm="`) || !strings.Contains(ch, `error="invalid_token"`) {
		t.Fatalf("WWW-Authenticate = %q", ch)
	}
	if body := resp.JSON(t); body["error"] != "invalid_token" {
		t.Fatalf("body = %s", resp.Body)
	}
	if got := s.Upstream.Hits(); got != hitsBefore {
		t.Fatalf("a refused request reached the upstream (%d hits, was %d)", got, hitsBefore)
	}
}

// keepUnderscores is a global option making Caddy keep client headers with
// underscores or dots in their names, which it drops by default; with it, only
// guest_auth's own stripping stands between a spoofed x_auth_user_id and
// the upstream.
const keepUnderscores = "servers {\n\t\texpected_underscore_headers x_*\n\t\texpected_dot_headers x.*\n\t}"

// startWithGlobal is startGuestAuth with extra global options.
func startWithGlobal(t *testing.T, global, options string) *server {
	t.Helper()
	s := newServer(t)
	cfg := strings.Replace(s.siteConfig(options), "persist_config off\n", "persist_config off\n\t"+global+"\n", 1)
	s.Start(cfg)
	return s
}

func TestSpoofedIdentityHeadersNeverReachUpstream(t *testing.T) {
	t.Parallel()
	for _, variant := range []struct{ name, global string }{{"default", ""}, {"underscores kept", keepUnderscores}} {
		t.Run(variant.name, func(t *testing.T) {
			t.Parallel()
			s := startWithGlobal(t, variant.global, "")
			ts := s.createGuest()
			_, c := jwtParts(t, ts.AccessToken)
			// A header Caddy keeps only when underscores are allowed: shows
			// which case this is, so the spoof checks are not vacuous.
			control := []string{"x_auth_user_extra", "kept"}

			// These share the upstream's hit counter, so they run in order.
			t.Run("no token", func(t *testing.T) {
				resp := s.doRaw(http.MethodGet, "/app", nil, append(control, spoofs...)...)
				if resp.Status != http.StatusOK {
					t.Fatalf("status %d: %s", resp.Status, resp.Body)
				}
				h := seen(t, resp)
				if kept := h.Get("X_auth_user_extra") == "kept"; kept != (variant.global != "") {
					t.Fatalf("underscore control header kept = %v: %v", kept, h)
				}
				if keys := identityKeys(h, identityNames...); len(keys) != 0 {
					t.Fatalf("identity headers reached the upstream without a token: %v", keys)
				}
				noSpoofValues(t, h)
			})

			t.Run("bad token", func(t *testing.T) {
				hits := s.Upstream.Hits()
				for _, bad := range []string{"garbage", ts.AccessToken + "x", ts.IDToken, ts.RefreshToken} {
					resp := s.doRaw(http.MethodGet, "/app", nil, append([]string{"Authorization", "Bearer " + bad}, spoofs...)...)
					wantRefused(t, s, resp, hits)
				}
			})

			t.Run("valid token", func(t *testing.T) {
				for _, authz := range []string{"Bearer ", "bearer ", "BEARER "} {
					resp := s.doRaw(http.MethodGet, "/app", nil, append([]string{"Authorization", authz + ts.AccessToken}, spoofs...)...)
					if resp.Status != http.StatusOK {
						t.Fatalf("status %d: %s", resp.Status, resp.Body)
					}
					h := seen(t, resp)
					noSpoofValues(t, h)
					keys := identityKeys(h, identityNames...)
					slices.Sort(keys)
					if want := []string{"X-Auth-User-Anonymous", "X-Auth-User-Id", "X-Auth-User-Name", "X-Auth-User-Tag"}; !slices.Equal(keys, want) {
						t.Fatalf("identity header keys = %v, want exactly %v", keys, want)
					}
					want := map[string]string{
						"X-Auth-User-Id": c["sub"].(string), "X-Auth-User-Name": c["name"].(string),
						"X-Auth-User-Tag": "guest-user", "X-Auth-User-Anonymous": "true",
					}
					for k, v := range want {
						if got := h.Values(k); len(got) != 1 || got[0] != v {
							t.Fatalf("%s = %q, want [%q]", k, got, v)
						}
					}
				}
			})
		})
	}
}

func TestCustomIdentityHeaderNames(t *testing.T) {
	t.Parallel()
	s := startWithGlobal(t, keepUnderscores, `
		header user_id X-User
		header user_name x-user-name
		header user_tag X-Role
		header user_anonymous X-Guest`)
	custom := []string{"x-user", "x-user-name", "x-role", "x-guest"}
	customSpoofs := []string{
		"x_user", "spoof-1", "X-USER", "spoof-2", "X_User_Name", "spoof-3",
		"x-role", "spoof-4", "X_GUEST", "spoof-5", "x-Guest", "spoof-6",
		"X.Role", "spoof-7", // dotted: a CGI upstream reads it as HTTP_X_ROLE
		// The default names are stripped too, whatever is configured.
		"X-Auth-User-Id", "spoof-8", "x_auth_user_tag", "spoof-9", "X.Auth.User.Anonymous", "spoof-10",
		"x_other", "kept", // control: Caddy keeps underscore headers here
		"x.other", "kept", // control: and dotted ones
	}
	ts := s.createGuest()
	_, c := jwtParts(t, ts.AccessToken)

	resp := s.doRaw(http.MethodGet, "/app", nil, customSpoofs...)
	if resp.Status != http.StatusOK {
		t.Fatalf("no token: %d %s", resp.Status, resp.Body)
	}
	h := seen(t, resp)
	noSpoofValues(t, h)
	if h.Get("X_other") != "kept" || h.Get("X.other") != "kept" {
		t.Fatalf("Caddy dropped an underscore or dot control header, so the spoof checks prove nothing: %v", h)
	}
	if keys := identityKeys(h, custom...); len(keys) != 0 {
		t.Fatalf("custom identity headers without a token: %v", keys)
	}

	resp = s.doRaw(http.MethodGet, "/app", nil, append([]string{"Authorization", "Bearer " + ts.AccessToken}, customSpoofs...)...)
	if resp.Status != http.StatusOK {
		t.Fatalf("valid token: %d %s", resp.Status, resp.Body)
	}
	h = seen(t, resp)
	noSpoofValues(t, h)
	want := map[string]string{"X-User": c["sub"].(string), "X-User-Name": c["name"].(string), "X-Role": "guest-user", "X-Guest": "true"}
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Fatalf("%s = %q, want [%q] (all: %v)", k, got, v, h)
		}
	}
	if keys := identityKeys(h, custom...); len(keys) != 4 {
		t.Fatalf("custom identity header keys = %v, want 4", keys)
	}
	// Only the configured names are injected.
	if keys := identityKeys(h, identityNames...); len(keys) != 0 {
		t.Fatalf("default identity headers injected although renamed: %v", keys)
	}
}

func TestIdentityPlaceholders(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	// request_header sorts after guest_auth; the deferred response header is
	// evaluated when the response is written, after guest_auth ran.
	s.Start(fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		client demo-app demo-secret
	}
	request_header X-Placeholder-Id {http.auth.user.id}
	request_header X-Placeholder-Name {http.auth.user.name}
	request_header X-Placeholder-Tag {http.auth.user.tag}
	request_header X-Placeholder-Anonymous {http.auth.user.anonymous}
	header {
		X-Resp-User-Id {http.auth.user.id}
		defer
	}
	handle /whoami {
		respond "id={http.auth.user.id} tag={http.auth.user.tag} anonymous={http.auth.user.anonymous}"
	}
	reverse_proxy %s
}
`, s.Admin, s.Port, s.DB, strings.TrimPrefix(s.Upstream.URL, "http://")))

	ts := s.createGuest()
	_, c := jwtParts(t, ts.AccessToken)
	id, name := c["sub"].(string), c["name"].(string)

	resp := s.get("/app", ts.AccessToken, "X-Placeholder-Id", "spoof-id")
	if resp.Status != http.StatusOK {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	h := seen(t, resp)
	for k, v := range map[string]string{"X-Placeholder-Id": id, "X-Placeholder-Name": name, "X-Placeholder-Tag": "guest-user", "X-Placeholder-Anonymous": "true"} {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Fatalf("%s = %q, want [%q]", k, got, v)
		}
	}
	if got := resp.Header.Get("X-Resp-User-Id"); got != id {
		t.Fatalf("response header X-Resp-User-Id = %q, want %q", got, id)
	}

	resp = s.get("/whoami", ts.AccessToken)
	if want := fmt.Sprintf("id=%s tag=guest-user anonymous=true", id); resp.Status != http.StatusOK || string(resp.Body) != want {
		t.Fatalf("respond with placeholders: %d %q, want %q", resp.Status, resp.Body, want)
	}

	// Without a token the placeholders are empty, never a client's value.
	resp = s.get("/app", "", "X-Placeholder-Id", "spoof-id", "X-Auth-User-Id", "spoof-id")
	h = seen(t, resp)
	if h.Get("X-Placeholder-Id") != "" || h.Get("X-Placeholder-Tag") != "" {
		t.Fatalf("tokenless placeholders: %v", h)
	}
	noSpoofValues(t, h)
	resp = s.get("/whoami", "")
	if string(resp.Body) != "id= tag= anonymous=" {
		t.Fatalf("tokenless respond: %q", resp.Body)
	}
}

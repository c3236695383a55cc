package caddymodule

// In-process tables for ServeHTTP: a provisioned handler on a bbolt store in
// a temporary directory, and a next handler that records what the upstream
// would receive. The e2e tests keep what needs the real proxy path (Caddy's
// own header handling, hop-by-hop removal, reloads).

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/guestauth/caddy-guestauth/internal/headers"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
)

// testSite is a provisioned handler in front of a recording upstream.
type testSite struct {
	t *testing.T
	g *GuestAuth

	hits     int         // requests that reached the upstream
	seen     http.Header // headers of the last one
	upstream func(http.ResponseWriter, *http.Request)
}

func newTestSite(t *testing.T, block string) *testSite {
	t.Helper()
	g, err := provisionConfig(t, newTestContext(t), t.TempDir(), block)
	if err != nil {
		t.Fatal(err)
	}
	return &testSite{t: t, g: g}
}

// result is a response with the error ServeHTTP returned.
type result struct {
	*httptest.ResponseRecorder
	err error
}

func (r result) status() int {
	if herr, ok := errors.AsType[caddyhttp.HandlerError](r.err); ok {
		return herr.StatusCode
	}
	return r.Code
}

// serve runs r through the handler as Caddy's server would (a replacer and
// the client IP in the context).
func (s *testSite) serve(r *http.Request) result {
	s.t.Helper()
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1"})
	w := httptest.NewRecorder()
	err := s.g.ServeHTTP(w, r.WithContext(ctx), caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		s.hits++
		s.seen = r.Header.Clone()
		if s.upstream != nil {
			s.upstream(w, r)
		}
		return nil
	}))
	return result{w, err}
}

// get sends a GET to /app with headers given as raw keys and values.
func (s *testSite) get(headers ...string) result {
	return s.send(http.MethodGet, headers...)
}

func (s *testSite) send(method string, headers ...string) result {
	s.t.Helper()
	r := httptest.NewRequest(method, "http://app.example/app", strings.NewReader("x=1"))
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header[headers[i]] = append(r.Header[headers[i]], headers[i+1])
	}
	return s.serve(r)
}

// guest creates a guest through the token endpoint; it returns the access
// token, the ID token and the refresh token, and the user id.
func (s *testSite) guest() (access, idToken, refresh, sub string) {
	s.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "client_id": {"app"}, "client_secret": {"app-secret"}, "code": {"guest-user"}}
	r := httptest.NewRequest(http.MethodPost, "http://app.example"+protocol.PathToken, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res := s.serve(r)
	var body struct {
		AccessToken  string `json:"access_token"`
		IDToken      string `json:"id_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if res.status() != http.StatusOK || json.Unmarshal(res.Body.Bytes(), &body) != nil || body.AccessToken == "" {
		s.t.Fatalf("guest: %d %v %s", res.status(), res.err, res.Body)
	}
	_, claims := parseClaims(s.t, body.AccessToken)
	sub, _ = claims["sub"].(string)
	if sub == "" {
		s.t.Fatalf("access token claims %v", claims)
	}
	return body.AccessToken, body.IDToken, body.RefreshToken, sub
}

// user creates a guest and makes it a registered user named Alice in the
// store (the store is the truth for every token of the user).
func (s *testSite) user() (access, sub string) {
	s.t.Helper()
	access, _, _, sub = s.guest()
	_, err := s.g.shared.store.UpdateUser(context.Background(), sub, func(u *model.User) error {
		u.Name, u.Tag = "Alice", model.TagNormal
		return nil
	}, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return access, sub
}

// spoofHeaders are client-sent identity headers in many spellings, as raw
// keys (in-process nothing drops the underscore and dot ones first).
var spoofHeaders = []string{
	"x_auth_user_id", "spoof-id-1",
	"X-AUTH-USER-TAG", "normal-user",
	"X_Auth_User_Anonymous", "false",
	"x-auth-user-name", "spoof-admin",
	"X-Auth-User-Id", "spoof-id-2",
	"X_AUTH_USER_NAME", "spoof-root",
	"x-Auth_user-TAG", "normal-user",
	"x.auth.user.anonymous", "false",
	"X.Auth.User.Id", "spoof-id-3",
	"X-Auth-Merged-From", "spoof-merged",
	"x_auth_merged_from", "spoof-merged-2",
	// A captured assertion, to a handler that signs none.
	"X-Auth-Assertion", "spoof-assertion",
	"x_auth.ASSERTION", "spoof-assertion-2",
}

// identityKeysOf lists the keys of h that spell one of the normalized names.
func identityKeysOf(h http.Header, names ...string) []string {
	var out []string
	for k := range h {
		if slices.Contains(names, headers.Normalize(k)) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

var defaultIdentity = []string{"x-auth-user-id", "x-auth-user-name", "x-auth-user-tag", "x-auth-user-anonymous", "x-auth-merged-from", "x-auth-assertion"}

// wantIdentity checks the upstream got exactly the identity headers want
// (canonical name to value), each once, and no spoofed value.
func (s *testSite) wantIdentity(what string, want map[string]string) {
	s.t.Helper()
	for k, vs := range s.seen {
		for _, v := range vs {
			if strings.HasPrefix(v, "spoof") {
				s.t.Fatalf("%s: spoofed %s: %q reached the upstream", what, k, v)
			}
		}
	}
	var names []string
	for k := range want {
		names = append(names, headers.Normalize(k))
	}
	got := identityKeysOf(s.seen, append(names, defaultIdentity...)...)
	var wantKeys []string
	for k, v := range want {
		wantKeys = append(wantKeys, k)
		if vs := s.seen.Values(k); len(vs) != 1 || vs[0] != v {
			s.t.Fatalf("%s: upstream %s = %q, want [%q] (all: %v)", what, k, vs, v, s.seen)
		}
	}
	slices.Sort(wantKeys)
	if !slices.Equal(got, wantKeys) {
		s.t.Fatalf("%s: upstream identity keys %v, want %v", what, got, wantKeys)
	}
}

func guestIdentity(sub string) map[string]string {
	return map[string]string{"X-Auth-User-Id": sub, "X-Auth-User-Name": "", "X-Auth-User-Tag": "guest-user", "X-Auth-User-Anonymous": "true"}
}

// TestServeRequire: the access policies against no token, present but
// unusable tokens, a guest and a registered user.
func TestServeRequire(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{RequireNone, RequireAny, RequireUser} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := newTestSite(t, "require "+mode)
			access, idToken, refresh, gsub := s.guest()
			userTok, usub := s.user()

			type row struct {
				name    string
				headers []string
				status  int
				code    string // error in WWW-Authenticate and the body; "" for none
				want    map[string]string
			}
			anonymous := map[string]string{}
			// none is the status of a request without a token: it goes on
			// anonymous under require none, and is answered 401 otherwise.
			none := func(ok, other int) int {
				if mode == RequireNone {
					return ok
				}
				return other
			}
			rows := []row{
				{"no token", spoofHeaders, none(200, 401), "", anonymous},
				{"garbage", []string{"Authorization", "Bearer garbage"}, 401, "invalid_token", nil},
				{"not a JWS", []string{"Authorization", "Bearer a.b.c"}, 401, "invalid_token", nil},
				{"tampered", []string{"Authorization", "Bearer " + access[:len(access)-2]}, 401, "invalid_token", nil},
				{"ID token", []string{"Authorization", "Bearer " + idToken}, 401, "invalid_token", nil},
				{"refresh token", []string{"Authorization", "Bearer " + refresh}, 401, "invalid_token", nil},
				{"empty bearer", []string{"Authorization", "Bearer "}, 400, "invalid_request", nil},
				{"two bearers", []string{"Authorization", "Bearer " + access, "Authorization", "Bearer " + access}, 400, "invalid_request", nil},
				{"guest", append([]string{"Authorization", "Bearer " + access}, spoofHeaders...), 200, "", guestIdentity(gsub)},
				{"guest, lower-case scheme", []string{"Authorization", "bearer " + access}, 200, "", guestIdentity(gsub)},
				{"user", append([]string{"Authorization", "BEARER " + userTok}, spoofHeaders...), 200, "",
					map[string]string{"X-Auth-User-Id": usub, "X-Auth-User-Name": "Alice", "X-Auth-User-Tag": "normal-user", "X-Auth-User-Anonymous": "false"}},
				{"other scheme", []string{"Authorization", "Basic YTpi"}, none(200, 401), "", anonymous},
			}
			if mode == RequireUser {
				rows[8].status, rows[8].code = 403, "insufficient_scope"
				rows[9].status, rows[9].code = 403, "insufficient_scope"
			}
			for _, r := range rows {
				hits := s.hits
				res := s.get(r.headers...)
				if res.status() != r.status {
					t.Fatalf("%s: %d %v %s, want %d", r.name, res.status(), res.err, res.Body, r.status)
				}
				if r.status != http.StatusOK {
					if s.hits != hits {
						t.Fatalf("%s: a refused request reached the upstream", r.name)
					}
					ch := res.Header().Get("WWW-Authenticate")
					if !strings.HasPrefix(ch, `Bearer realm="`) || strings.Contains(ch, "error=") != (r.code != "") ||
						(r.code != "" && !strings.Contains(ch, `error="`+r.code+`"`)) {
						t.Fatalf("%s: WWW-Authenticate = %q, want error %q", r.name, ch, r.code)
					}
					var body struct{ Error string }
					if err := json.Unmarshal(res.Body.Bytes(), &body); err != nil || (r.code != "" && body.Error != r.code) || (r.code == "" && body.Error != "unauthorized") {
						t.Fatalf("%s: body %s", r.name, res.Body)
					}
					continue
				}
				if s.hits != hits+1 {
					t.Fatalf("%s: the upstream was not reached", r.name)
				}
				want := r.want
				if name, ok := want["X-Auth-User-Name"]; ok && name == "" {
					want = maps.Clone(want)
					want["X-Auth-User-Name"] = s.seen.Get("X-Auth-User-Name") // the guest's generated name
					if want["X-Auth-User-Name"] == "" {
						t.Fatalf("%s: no user name sent upstream", r.name)
					}
				}
				s.wantIdentity(r.name, want)
			}
		})
	}
}

// TestServeStripsIdentityHeaders: client-sent identity headers, in any
// spelling, configured names and default ones alike, never reach the
// upstream; only the configured names are injected.
func TestServeStripsIdentityHeaders(t *testing.T) {
	t.Parallel()
	s := newTestSite(t, "header user_id X-User\nheader user_name x-user-name\nheader user_tag X-Role\nheader user_anonymous X-Guest")
	access, _, _, sub := s.guest()
	custom := []string{
		"x_user", "spoof-1", "X-USER", "spoof-2", "X_User_Name", "spoof-3",
		"x-role", "spoof-4", "X_GUEST", "spoof-5", "x-Guest", "spoof-6", "X.Role", "spoof-7",
		"x_other", "kept", "x.other", "kept", // controls: other headers pass
	}
	spoofs := append(custom, spoofHeaders...)
	customNames := []string{"x-user", "x-user-name", "x-role", "x-guest"}

	for _, r := range []struct {
		name    string
		headers []string
		want    map[string]string
	}{
		{"no token", spoofs, map[string]string{}},
		{"guest", append([]string{"Authorization", "Bearer " + access}, spoofs...),
			map[string]string{"X-User": sub, "X-User-Name": "", "X-Role": "guest-user", "X-Guest": "true"}},
	} {
		if res := s.get(r.headers...); res.status() != http.StatusOK {
			t.Fatalf("%s: %d %s", r.name, res.status(), res.Body)
		}
		if !slices.Equal(s.seen["x_other"], []string{"kept"}) || !slices.Equal(s.seen["x.other"], []string{"kept"}) {
			t.Fatalf("%s: a control header was dropped: %v", r.name, s.seen)
		}
		if keys := identityKeysOf(s.seen, append(customNames, defaultIdentity...)...); len(keys) != len(r.want) {
			t.Fatalf("%s: upstream identity keys %v, want %d", r.name, keys, len(r.want))
		}
		for k, v := range r.want {
			if vs := s.seen.Values(k); len(vs) != 1 || (v != "" && vs[0] != v) || strings.HasPrefix(vs[0], "spoof") {
				t.Fatalf("%s: upstream %s = %q, want [%q]", r.name, k, vs, v)
			}
		}
		for k, vs := range s.seen {
			for _, v := range vs {
				if strings.HasPrefix(v, "spoof") {
					t.Fatalf("%s: spoofed %s: %q reached the upstream", r.name, k, v)
				}
			}
		}
	}
}

// TestServeConnectionTokens: a Connection header cannot name an identity
// header (the proxy would then drop the injected one as hop-by-hop); its
// other tokens stay.
func TestServeConnectionTokens(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{RequireNone, RequireAny} {
		serveConnectionTokens(t, mode)
	}
}

func serveConnectionTokens(t *testing.T, mode string) {
	s := newTestSite(t, "require "+mode)
	access, _, _, sub := s.guest()
	for _, r := range []struct{ conn, want string }{
		{"X-Auth-User-Tag, X-Auth-User-Anonymous", ""},
		{"x_auth_user_id, X.Auth.User.Name, keep-alive", "keep-alive"},
		{"close,x_auth_user_tag", "close"},
		{"X-AUTH-USER-TAG, X-Other", "X-Other"},
		{"X-Auth-Merged-From", ""},
	} {
		if res := s.get("Authorization", "Bearer "+access, "Connection", r.conn); res.status() != http.StatusOK {
			t.Fatalf("Connection %q: %d %s", r.conn, res.status(), res.Body)
		}
		got := strings.ReplaceAll(strings.Join(s.seen.Values("Connection"), ","), " ", "")
		if got != strings.ReplaceAll(r.want, " ", "") {
			t.Fatalf("Connection %q: upstream Connection %q, want %q", r.conn, s.seen.Values("Connection"), r.want)
		}
		want := guestIdentity(sub)
		if want["X-Auth-User-Name"] = s.seen.Get("X-Auth-User-Name"); want["X-Auth-User-Name"] == "" {
			t.Fatalf("Connection %q: no user name upstream: %v", r.conn, s.seen)
		}
		s.wantIdentity("Connection "+r.conn, want)
	}
}

// TestServeCookie: the session cookie against the Authorization header,
// invalid and duplicated cookies under each policy, cross-origin unsafe
// requests, and the module's own endpoints (which never read it).
func TestServeCookie(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{RequireNone, RequireAny} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			s := newTestSite(t, "cookie sess\nrequire "+mode)
			access, idToken, _, sub := s.guest()
			other, _, _, otherSub := s.guest()
			for _, r := range []struct {
				name    string
				method  string
				headers []string
				status  int
				code    string
				sub     string // "" for anonymous
			}{
				{"cookie", "GET", []string{"Cookie", "other=1; sess=" + access}, 200, "", sub},
				{"cookie among two Cookie fields", "GET", []string{"Cookie", "other=1", "Cookie", "sess=" + access}, 200, "", sub},
				{"the header wins over the cookie", "GET", []string{"Authorization", "Bearer " + other, "Cookie", "sess=" + access + "; other=1"}, 200, "", otherSub},
				{"an invalid header is not saved by a valid cookie", "GET", []string{"Authorization", "Bearer garbage", "Cookie", "sess=" + access + "; other=1"}, 401, "invalid_token", ""},
				{"another scheme leaves the cookie unread", "GET", []string{"Authorization", "Basic YTpi", "Cookie", "sess=" + access + "; other=1"}, map[bool]int{true: 200, false: 401}[mode == RequireNone], "", ""},
				{"garbage cookie", "GET", []string{"Cookie", "sess=garbage; other=1"}, 401, "invalid_token", ""},
				{"tampered cookie", "GET", []string{"Cookie", "other=1; sess=" + access + "x"}, 401, "invalid_token", ""},
				{"ID token cookie", "GET", []string{"Cookie", "sess=" + idToken + "; other=1"}, 401, "invalid_token", ""},
				{"duplicate, valid first", "GET", []string{"Cookie", "sess=" + access + "; other=1; sess=garbage"}, 401, "invalid_token", ""},
				{"duplicate, valid second", "GET", []string{"Cookie", "sess=garbage; sess=" + access + "; other=1"}, 401, "invalid_token", ""},
				{"cross-site POST", "POST", []string{"Cookie", "other=1; sess=" + access, "Sec-Fetch-Site", "cross-site"}, 403, "cross_origin_request", ""},
				{"same-site PUT", "PUT", []string{"Cookie", "other=1; sess=" + access, "Sec-Fetch-Site", "same-site"}, 403, "cross_origin_request", ""},
				{"foreign Origin DELETE", "DELETE", []string{"Cookie", "other=1; sess=" + access, "Origin", "http://evil.example"}, 403, "cross_origin_request", ""},
				{"same-origin POST", "POST", []string{"Cookie", "other=1; sess=" + access, "Sec-Fetch-Site", "same-origin"}, 200, "", sub},
				{"own Origin PATCH", "PATCH", []string{"Cookie", "other=1; sess=" + access, "Origin", "http://app.example"}, 200, "", sub},
				{"non-browser POST", "POST", []string{"Cookie", "other=1; sess=" + access}, 200, "", sub},
				{"cross-site GET", "GET", []string{"Cookie", "other=1; sess=" + access, "Sec-Fetch-Site", "cross-site"}, 200, "", sub},
				{"cross-site Bearer POST", "POST", []string{"Authorization", "Bearer " + access, "Cookie", "other=1; sess=" + access, "Sec-Fetch-Site", "cross-site"}, 200, "", sub},
			} {
				// An unusable cookie is no session: anonymous under none.
				if mode == RequireNone && r.code == "invalid_token" && !strings.Contains(strings.Join(r.headers, " "), "Authorization") {
					r.status, r.code = 200, ""
				}
				hits := s.hits
				res := s.send(r.method, r.headers...)
				if res.status() != r.status {
					t.Fatalf("%s: %d %s, want %d", r.name, res.status(), res.Body, r.status)
				}
				if r.status != http.StatusOK {
					var body struct{ Error string }
					json.Unmarshal(res.Body.Bytes(), &body)
					if s.hits != hits || body.Error != cmp.Or(r.code, "unauthorized") {
						t.Fatalf("%s: refused with %s (want %s), upstream reached: %v", r.name, res.Body, r.code, s.hits != hits)
					}
					ch := res.Header().Get("WWW-Authenticate")
					if r.status == http.StatusUnauthorized && (!strings.HasPrefix(ch, `Bearer realm="`) || (r.code == "" && strings.Contains(ch, "error=")) || (r.code != "" && !strings.Contains(ch, `error="`+r.code+`"`))) {
						t.Fatalf("%s: WWW-Authenticate %q", r.name, res.Header().Get("WWW-Authenticate"))
					}
					continue
				}
				if s.hits != hits+1 {
					t.Fatalf("%s: the upstream was not reached", r.name)
				}
				// The upstream never sees the session cookie, only the others.
				if got := s.seen.Values("Cookie"); len(got) != 1 || got[0] != "other=1" {
					t.Fatalf("%s: upstream Cookie = %q, want [other=1]", r.name, got)
				}
				if got := s.seen.Get("X-Auth-User-Id"); got != r.sub || (r.sub == "" && len(identityKeysOf(s.seen, defaultIdentity...)) != 0) {
					t.Fatalf("%s: upstream identity %v, want user %q", r.name, s.seen, r.sub)
				}
			}

			// The module's endpoints take the header only.
			res := s.serve(withHeaders(httptest.NewRequest(http.MethodGet, "http://app.example"+protocol.PathUserInfo, nil), "Cookie", "sess="+access))
			if res.status() != http.StatusUnauthorized {
				t.Fatalf("userinfo with the cookie only: %d %s", res.status(), res.Body)
			}
			res = s.serve(withHeaders(httptest.NewRequest(http.MethodGet, "http://app.example"+protocol.PathUserInfo, nil), "Authorization", "Bearer "+access))
			if res.status() != http.StatusOK || !strings.Contains(res.Body.String(), sub) {
				t.Fatalf("userinfo with the header: %d %s", res.status(), res.Body)
			}
		})
	}
}

func withHeaders(r *http.Request, headers ...string) *http.Request {
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header.Add(headers[i], headers[i+1])
	}
	return r
}

// TestServeKeepHeader: the upstream's keep header never leaves Caddy; its
// value "true" on a guest's request marks the guest kept. With a custom
// keep_header, the default one does not leave Caddy either (an app moved to
// the new name may still send the old), and marks nothing.
func TestServeKeepHeader(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ config, header string }{
		{"", "X-Guest-Auth-Keep"},
		{"keep_header x-keep-guest", "X-Keep-Guest"},
	} {
		s := newTestSite(t, c.config)
		for _, r := range []struct {
			name      string
			value     string
			token     bool
			writeOnly bool // the upstream writes its body without WriteHeader
			kept      bool
		}{
			{"true", "true", true, false, true},
			{"True, body only", " True ", true, true, true},
			{"false", "false", true, false, false},
			{"other value", "yes", true, true, false},
			{"no identity", "true", false, false, false},
		} {
			access, _, _, sub := s.guest()
			s.upstream = func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set(c.header, r.value)
				if c.header != "X-Guest-Auth-Keep" {
					w.Header().Set("X-Guest-Auth-Keep", "true")
				}
				w.Header().Set("X-Other", "kept")
				if !r.writeOnly {
					w.WriteHeader(http.StatusOK)
				}
				w.Write([]byte("ok"))
			}
			var headers []string
			if r.token {
				headers = []string{"Authorization", "Bearer " + access}
			}
			res := s.get(headers...)
			if res.status() != http.StatusOK || res.Body.String() != "ok" || res.Header().Get("X-Other") != "kept" {
				t.Fatalf("%s %s: %d %v %s", c.header, r.name, res.status(), res.Header(), res.Body)
			}
			for k := range res.Header() {
				if strings.EqualFold(k, c.header) || strings.EqualFold(k, "X-Guest-Auth-Keep") {
					t.Fatalf("%s %s: the keep header left Caddy: %v", c.header, r.name, res.Header())
				}
			}
			u, err := s.g.shared.store.GetUser(context.Background(), sub)
			if err != nil || u.Kept != r.kept {
				t.Fatalf("%s %s: kept = %v (%v), want %v", c.header, r.name, u != nil && u.Kept, err, r.kept)
			}
		}
	}
}

// testClock is a settable clock for a provisioned handler.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// tokenRequest posts a form to the token endpoint.
func (s *testSite) tokenRequest(form url.Values) (result, map[string]any) {
	s.t.Helper()
	form.Set("client_id", "app")
	form.Set("client_secret", "app-secret")
	r := httptest.NewRequest(http.MethodPost, "http://app.example"+protocol.PathToken, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res := s.serve(r)
	var body map[string]any
	json.Unmarshal(res.Body.Bytes(), &body)
	return res, body
}

// TestServeLifetimeOptions: access_token_lifetime sets the tokens' life,
// clock_skew how long past it they are still accepted,
// session_idle_timeout and session_lifetime when refreshing stops working.
func TestServeLifetimeOptions(t *testing.T) {
	t.Parallel()
	clock := &testClock{t: time.Now().Truncate(time.Second)}
	g, err := provisionConfig(t, newTestContext(t), t.TempDir(),
		"access_token_lifetime 15m\nclock_skew 10s\nsession_idle_timeout 2h\nsession_lifetime 5h",
		func(g *GuestAuth) { g.now = clock.Now })
	if err != nil {
		t.Fatal(err)
	}
	s := &testSite{t: t, g: g}
	access, _, refresh, _ := s.guest()
	_, c := parseClaims(t, access)
	if exp, iat := c["exp"].(float64), c["iat"].(float64); exp-iat != 900 {
		t.Fatalf("access token lives %vs, want 900", exp-iat)
	}
	clock.Advance(15*time.Minute + 5*time.Second) // expired, within the skew
	if res := s.get("Authorization", "Bearer "+access); res.status() != http.StatusOK {
		t.Fatalf("5s past exp with a 10s skew: %d %s", res.status(), res.Body)
	}
	clock.Advance(6 * time.Second) // past the skew
	if res := s.get("Authorization", "Bearer "+access); res.status() != http.StatusUnauthorized || !strings.Contains(res.Body.String(), "expired") {
		t.Fatalf("11s past exp with a 10s skew: %d %s", res.status(), res.Body)
	}

	// Refreshing every 1h59m keeps a session past its idle timeout, up to
	// its lifetime (proxied requests do not count as session use).
	_, _, refresh, _ = s.guest()
	refreshed := func() bool {
		res, body := s.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
		if res.status() != http.StatusOK {
			if body["error"] != "invalid_grant" {
				t.Fatalf("refresh refused with %d %s, want invalid_grant", res.status(), res.Body)
			}
			return false
		}
		if body["expires_in"] != float64(900) {
			t.Fatalf("expires_in %v, want 900", body["expires_in"])
		}
		refresh = body["refresh_token"].(string)
		return true
	}
	for range 2 { // 3h58m after sign-in
		clock.Advance(2*time.Hour - time.Minute)
		if !refreshed() {
			t.Fatalf("refresh within the idle timeout refused at %v", clock.Now())
		}
	}
	clock.Advance(time.Hour + 3*time.Minute) // 5h01m: past the session lifetime
	if refreshed() {
		t.Fatal("a refresh past session_lifetime worked")
	}

	// A fresh session idle for longer than session_idle_timeout ends.
	_, _, refresh, _ = s.guest()
	clock.Advance(2*time.Hour + time.Minute)
	if refreshed() {
		t.Fatal("a refresh past session_idle_timeout worked")
	}
}

// parseClaims decodes a JWT's header and payload without verifying it.
func parseClaims(t *testing.T, tok string) (hdr, claims map[string]any) {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	for i, dst := range []*map[string]any{&hdr, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(p[i])
		if err != nil || json.Unmarshal(raw, dst) != nil {
			t.Fatalf("JWT part %d: %v %s", i, err, raw)
		}
	}
	return hdr, claims
}

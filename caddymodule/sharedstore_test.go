package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// request sends method path (with a form body when form is not nil) to the
// site, headers given as raw keys and values.
func (s *testSite) request(method, target string, form url.Values, headers ...string) result {
	s.t.Helper()
	var r *http.Request
	if form != nil {
		r = httptest.NewRequest(method, target, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		r.Header[headers[i]] = append(r.Header[headers[i]], headers[i+1])
	}
	return s.serve(r)
}

// sessionCookie is the session cookie an answer sets (either spelling),
// nil for none.
func sessionCookie(res result) *http.Cookie {
	for _, c := range res.Result().Cookies() {
		if strings.HasSuffix(c.Name, "guestauth_session") {
			return c
		}
	}
	return nil
}

// Two sites sharing one store (one file, or one PostgreSQL database) under
// different issuers honour neither each other's refresh tokens nor each
// other's browser sessions, and the refusal ends nothing at the site that
// minted them.
func TestSitesSharingAStoreKeepTheirSessions(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"bolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			storage := "storage " + filepath.Join(t.TempDir(), "shared.db")
			if backend == "postgres" {
				storage = `storage postgres "` + pgtest.DSN(t) + `"`
			}
			site := func(issuer string) *testSite {
				return newTestSite(t, storage+"\nissuer "+issuer+"\nbrowser {\n}")
			}
			a, b := site("https://a.example"), site("https://b.example")

			_, _, refresh, _ := a.guest()
			res, body := b.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
			if res.status() != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Fatalf("A's refresh token at B: %d %v", res.status(), body)
			}
			if res, body := a.tokenRequest(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); res.status() != http.StatusOK {
				t.Fatalf("A's refresh token at A after B refused it: %d %v", res.status(), body)
			}

			res = a.request(http.MethodPost, "http://a.example/auth/guest", url.Values{}, "Sec-Fetch-Site", "same-origin")
			c := sessionCookie(res)
			if res.status() != http.StatusSeeOther || c == nil {
				t.Fatalf("browser guest at A: %d %v", res.status(), res.Result().Cookies())
			}
			cookie := c.Name + "=" + c.Value
			res = b.request(http.MethodGet, "http://b.example/app", nil, "Cookie", cookie)
			if res.status() != http.StatusOK || b.seen.Get("X-Auth-User-Id") != "" {
				t.Fatalf("A's browser session at B: %d, upstream identity %q", res.status(), b.seen.Get("X-Auth-User-Id"))
			}
			if cl := sessionCookie(res); cl == nil || cl.MaxAge >= 0 {
				t.Fatalf("B did not clear A's cookie: %v", res.Result().Cookies())
			}
			if res := a.request(http.MethodGet, "http://a.example/app", nil, "Cookie", cookie); res.status() != http.StatusOK || a.seen.Get("X-Auth-User-Tag") != "guest-user" {
				t.Fatalf("A's browser session at A after B refused it: %d %v", res.status(), a.seen)
			}
		})
	}
}

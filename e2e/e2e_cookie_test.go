package e2e

// Cookie mode (cookie <name>) over a real Caddy: the session cookie is a
// bearer credential the upstream never sees, refused on unsafe cross-origin
// requests. Invalid and duplicated cookies under each policy are rows of
// the in-process TestServeCookie.

import (
	"net/http"
	"strings"
	"testing"
)

func TestCookieCrossSiteRefused(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "cookie sess")
	ts := s.createGuest()
	_, c := jwtParts(t, ts.AccessToken)
	cookie := "other=1; sess=" + ts.AccessToken

	for _, hdrs := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
		{"Origin", "http://evil.example"},
	} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			hits := s.Upstream.Hits()
			resp := s.do(method, "/app", strings.NewReader("x=1"), append([]string{"Cookie", cookie}, hdrs...)...)
			if resp.Status != http.StatusForbidden {
				t.Fatalf("%s with the cookie and %v: %d %s, want 403", method, hdrs, resp.Status, resp.Body)
			}
			if s.Upstream.Hits() != hits {
				t.Fatalf("a refused cross-site %s reached the upstream", method)
			}
		}
	}

	// What stays open: same-origin and non-browser unsafe requests with the
	// cookie, safe cross-site requests, and Bearer requests from anywhere.
	// The upstream never sees the session cookie, only the others.
	for _, tc := range []struct {
		method  string
		headers []string
	}{
		{http.MethodPost, []string{"Cookie", cookie, "Sec-Fetch-Site", "same-origin"}},
		{http.MethodPost, []string{"Cookie", cookie, "Origin", s.Base}},
		{http.MethodPost, []string{"Cookie", cookie}},
		{http.MethodGet, []string{"Cookie", cookie, "Sec-Fetch-Site", "cross-site"}},
		{http.MethodPost, []string{"Cookie", cookie, "Authorization", "Bearer " + ts.AccessToken, "Sec-Fetch-Site", "cross-site"}},
	} {
		resp := s.do(tc.method, "/app", strings.NewReader("x=1"), tc.headers...)
		if resp.Status != http.StatusOK {
			t.Fatalf("%s %v: %d %s", tc.method, tc.headers, resp.Status, resp.Body)
		}
		h := seen(t, resp)
		if h.Get("X-Auth-User-Id") != c["sub"] {
			t.Fatalf("%s %v: upstream identity %v", tc.method, tc.headers, h)
		}
		if got := h.Values("Cookie"); len(got) != 1 || got[0] != "other=1" {
			t.Fatalf("%s %v: upstream Cookie = %q, want [other=1]", tc.method, tc.headers, got)
		}
	}
}

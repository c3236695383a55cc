package caddymodule

import (
	"net/http"
	"testing"
)

// Every guest_auth handler strips every identity header guest_auth could
// inject — the assertion and merged-from headers included, under their
// default names and the configured ones — whatever it sets itself: a
// captured assertion cannot reach an upstream through a handler that signs
// none. Connection tokens naming them are dropped too (reverse_proxy would
// otherwise delete the verified ones after they are set).
func TestEveryHandlerStripsEveryIdentityHeader(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, config string
		names        []string // the configured names, stripped too
	}{
		{"no assertion, no browser", "", nil},
		{"browser, custom merged-from", "browser {\nmerged_header X-App-Merged\n}", []string{"X-App-Merged"}},
		{"custom assertion", "assertion {\nheader X-App-Assertion\n}", []string{"X-App-Assertion"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newTestSite(t, c.config)
			access, _, _, _ := s.guest()
			hdrs := []string{"Authorization", "Bearer " + access,
				"X-Auth-Assertion", "spoof-1", "x_auth_assertion", "spoof-2", "X.AUTH.ASSERTION", "spoof-3",
				"X-Auth-Merged-From", "spoof-4", "x_auth.merged-FROM", "spoof-5",
				"Connection", "keep-alive, X-Auth-Assertion, x_auth_merged_from"}
			for _, n := range c.names {
				hdrs = append(hdrs, n, "spoof-configured")
			}
			if res := s.get(hdrs...); res.status() != http.StatusOK {
				t.Fatalf("%d %v", res.status(), res.err)
			}
			for k, vs := range s.seen {
				for _, v := range vs {
					if len(v) >= 5 && v[:5] == "spoof" {
						t.Fatalf("%s: %q reached the upstream", k, v)
					}
				}
			}
			if got := s.seen.Values("Connection"); len(got) != 1 || got[0] != "keep-alive" {
				t.Fatalf("Connection %q, want the identity tokens dropped", got)
			}
		})
	}
}

package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// stripper is a GuestAuth with only what the identity headers need.
func stripper(headers HeaderNames) *GuestAuth {
	g := &GuestAuth{Headers: headers}
	g.setDefaults()
	g.prepareHeaders()
	return g
}

func TestStripSetReservesMergedFrom(t *testing.T) {
	g := stripper(HeaderNames{UserID: "X-User"})
	for _, want := range []string{"x-user", "x-auth-user-id", "x-auth-user-tag", "x-auth-merged-from"} {
		if !slices.Contains(g.headers.Names(), want) {
			t.Errorf("strip set %v lacks %q", g.headers.Names(), want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header["X_auth_merged_from"] = []string{"spoof"}
	r.Header["X-Auth-Merged-From"] = []string{"spoof"}
	g.headers.Strip(r)
	if len(r.Header) != 0 {
		t.Fatalf("reserved header kept: %v", r.Header)
	}
}

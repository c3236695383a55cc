package protocol

import (
	"slices"
	"testing"
)

// The pages' CSP form-action must allow where the authorization and
// end-session endpoints redirect after a page's form (Chromium checks
// form-action on those redirects): every client's redirect and
// post-logout origins, an app's own scheme as a scheme source, and
// nothing a CSP source cannot spell.
func TestRedirectSources(t *testing.T) {
	c := func(redirects, logouts []string) *Client {
		cl := NewClient("x", []byte("s"), false, "")
		cl.RedirectURIs, cl.PostLogoutRedirectURIs = redirects, logouts
		return cl
	}
	got := RedirectSources(map[string]*Client{
		"a": c([]string{"http://localhost:3000/callback", "http://localhost:4180/oauth2/callback"}, []string{"http://localhost:3000/"}),
		"b": c([]string{"https://App.Example.com/cb?x=1", "com.example.app:/oauth"}, []string{"https://[::1]:8443/bye"}),
		"c": c([]string{"https://bad;host/cb", "http://a b/"}, nil),
		"d": c(nil, nil),
	})
	want := []string{"com.example.app:", "http://localhost:3000", "http://localhost:4180", "https://[::1]:8443", "https://app.example.com"}
	if !slices.Equal(got, want) {
		t.Fatalf("RedirectSources = %q, want %q", got, want)
	}
}

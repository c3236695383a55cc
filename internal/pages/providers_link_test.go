package pages

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A member with a password links the provider from the account page and
// removes it again; an identity linked to another account is refused
// there (accounts are never merged from the account page).
func TestProviderLinkFromAccountPage(t *testing.T) {
	t.Parallel()
	s := newProviderSite(t)
	// bob's identity belongs to another member first.
	other := newVisitor(t)
	if _, body, _ := s.continueWith(other, "/auth/signin?return_to=/app", "bob", false); !strings.Contains(body, "normal-user bob") {
		t.Fatalf("bob: %q", body)
	}

	v := newVisitor(t)
	if code, _ := v.post(s.base+"/auth/signup", url.Values{"username": {"carol"}, "password": {"correct horse battery"}, "return_to": {"/app"}}); code != http.StatusOK {
		t.Fatalf("sign up: %d", code)
	}
	carol := s.whoami(v)
	// Linking bob's identity to carol is refused, and carol stays carol.
	code, body, _ := s.continueWith(v, "/auth/account", "bob", false)
	if code != http.StatusBadRequest || !strings.Contains(body, "already linked to an account") || s.whoami(v) != carol {
		t.Fatalf("linking another account's identity: %d %q %.500s", code, s.whoami(v), body)
	}
	code, body, _ = s.continueWith(v, "/auth/account", "alice", false)
	if code != http.StatusOK || !strings.Contains(body, "Test IdP: linked") || s.whoami(v) != carol {
		t.Fatalf("link from the account page: %d %q, %.1500s", code, s.whoami(v), body)
	}
	// Linked, the provider is not offered again.
	if strings.Contains(body, "Link Test IdP") {
		t.Fatalf("the account page offers to link a linked provider: %.1500s", body)
	}
	// A refused form on the account page (a wrong current password) shows
	// the page again with its lists, not without them.
	if code, page := v.post(s.base+"/auth/account", url.Values{"action": {"password"}, "current_password": {"wrong horse battery"}, "password": {"another horse battery"}}); code != http.StatusBadRequest || !strings.Contains(page, "Test IdP: linked") {
		t.Fatalf("a refused password change: %d %.1500s", code, page)
	}
	// With a password left, the link can be removed.
	if code, page := v.post(s.base+"/auth/account", url.Values{"action": {"unlink"}, "issuer": {s.p.Providers[0].RP.Issuer()}, "subject": {"u1"}}); code != http.StatusOK || strings.Contains(page, "Test IdP: linked") {
		t.Fatalf("remove: %d %.1500s", code, page)
	}
}

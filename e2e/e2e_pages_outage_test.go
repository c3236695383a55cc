package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// PostgreSQL down under browser sessions: every built-in page and form
// requested with a session cookie (a guest's, a member's), and every page
// load of the app, is answered 503 with Retry-After and an HTML error page:
// never Caddy's empty 500, never the page of a visitor without a session,
// and the cookie is neither cleared nor replaced. Once the server is back
// the same cookies work.
func TestPagesDuringPostgresOutage(t *testing.T) {
	t.Parallel()
	dsn, ctl := ownPostgres(t)
	s := newServer(t)
	s.DB = `postgres "` + dsn + `" {
			statement_timeout 2s
		}`
	s.Start(s.browserSite(""))
	guest := newVisitor(t, s)
	if id, _ := upstreamID(t, guest.page("/")); id == "" {
		t.Fatal("no guest")
	}
	guest.page("/") // confirmed
	member := newVisitor(t, s)
	if r := member.post("/auth/signup", url.Values{"username": {"mia"}, "password": {"correct horse battery"}}); r.Status != http.StatusSeeOther {
		t.Fatalf("sign-up: %d %s", r.Status, r.Body)
	}
	member.page("/")

	ctl("pause")
	forms := map[string]url.Values{
		"signin":  {"username": {"mia"}, "password": {"correct horse battery"}},
		"signup":  {"username": {"noah"}, "password": {"correct horse battery"}},
		"signout": {},
		"account": {"action": {"password"}, "current_password": {"correct horse battery"}, "password": {"another good password"}},
		"guest":   {},
	}
	for _, who := range []struct {
		name string
		v    *visitor
	}{{"guest", guest}, {"member", member}} {
		before := who.v.session().Value
		for _, page := range []string{"signin", "signup", "signout", "account", "guest"} {
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				var r *response
				if method == http.MethodGet {
					r = who.v.page("/auth/" + page)
				} else {
					r = who.v.post("/auth/"+page, forms[page])
				}
				what := who.name + " " + method + " " + page
				if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" ||
					!strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.Body), "temporarily unavailable") {
					t.Fatalf("%s while PostgreSQL is down: %d (Retry-After %q, %s)\n%s", what, r.Status, r.Header.Get("Retry-After"), r.Header.Get("Content-Type"), r.Body)
				}
				// The error page, not the page itself as a visitor without
				// a session would see it.
				if !strings.Contains(string(r.Body), "<title>Service Unavailable") || strings.Contains(string(r.Body), "<form") {
					t.Fatalf("%s: not the error page:\n%s", what, r.Body)
				}
				if c := sessionSetCookie(t, &response{Header: r.Header}); c != nil {
					t.Fatalf("%s: the session cookie was set: %v", what, c)
				}
				if got := who.v.session(); got == nil || got.Value != before {
					t.Fatalf("%s: the browser's session cookie changed", what)
				}
			}
		}
		if r := who.v.page("/"); r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: a page load of the app: %d %s", who.name, r.Status, r.Body)
		}
	}

	ctl("resume")
	var r *response
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = member.page("/auth/account"); r.Status == http.StatusOK {
			break
		}
	}
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), "mia") {
		t.Fatalf("the member's account page after the outage: %d %s", r.Status, r.Body)
	}
	if id, tag := upstreamID(t, guest.page("/")); id == "" || tag != "guest-user" {
		t.Fatalf("the guest after the outage: %q %q", id, tag)
	}
}

package pages

import (
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/oidcrp"
	"github.com/guestauth/caddy-guestauth/internal/oidcrp/oidcrptest"
)

// providerSite is the pages over real HTTP (as a browser reaches them,
// at http://localhost:<port>) with one provider: zitadel's example OP.
type providerSite struct {
	p    *Pages
	base string // http://localhost:<port>
}

func newProviderSite(t *testing.T) *providerSite {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://localhost:" + strings.TrimPrefix(ln.Addr().String(), "127.0.0.1:")
	issuer := oidcrptest.Start(t, base+"/auth/provider/testidp/callback")
	rp, err := oidcrp.New(oidcrp.Config{Name: "testidp", Issuer: issuer, ClientID: oidcrptest.ClientID, ClientSecret: oidcrptest.ClientSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPagesWith(t, 100)
	p.Issuer = func(*http.Request) string { return base }
	p.Providers = []Provider{{RP: rp, Label: "Test IdP"}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, p.Prefix) {
			// The "app": who is signed in.
			id, err := p.Identity(w, r)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			if id == nil {
				_, _ = io.WriteString(w, "anonymous")
				return
			}
			_, _ = io.WriteString(w, id.User.ID+" "+id.User.Tag+" "+id.User.Name)
			return
		}
		if err := p.Serve(w, r); err != nil {
			http.Error(w, err.Error(), 500)
		}
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return &providerSite{p: p, base: base}
}

// visitor is a browser: a cookie jar shared by the site and the OP.
type visitor struct {
	t *testing.T
	c *http.Client
	// stopAt, when set, stops redirects at URLs starting with it.
	stopAt string
	last   *url.URL
}

func newVisitor(t *testing.T) *visitor {
	jar, _ := cookiejar.New(nil)
	v := &visitor{t: t}
	v.c = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if v.stopAt != "" && strings.HasPrefix(req.URL.String(), v.stopAt) {
			v.last = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return v
}

func (v *visitor) get(u string) (int, string, *http.Response) {
	v.t.Helper()
	resp, err := v.c.Get(u)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

func (v *visitor) post(u string, form url.Values) (int, string) {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := v.c.Do(req)
	if err != nil {
		v.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// continueWith clicks "Continue with Test IdP" on page and signs in at
// the OP as user; it returns the final answer (the app's, after the
// callback's redirect) unless stopAtCallback, when it returns the
// callback URL without following it.
func (s *providerSite) continueWith(v *visitor, page, user string, stopAtCallback bool) (int, string, *url.URL) {
	v.t.Helper()
	_, body, _ := v.get(s.base + page)
	i := strings.Index(body, "/auth/provider/testidp/start")
	if i < 0 {
		v.t.Fatalf("no Continue with link on %s: %.500s", page, body)
	}
	href := body[i:]
	href = strings.ReplaceAll(href[:strings.IndexByte(href, '"')], "&amp;", "&")
	if !strings.Contains(body, "Continue with Test IdP") && !strings.Contains(body, "Link Test IdP") {
		v.t.Fatalf("no button text on %s", page)
	}
	if stopAtCallback {
		v.stopAt = s.base + "/auth/provider/testidp/callback"
		defer func() { v.stopAt = "" }()
	}
	_, opBody, resp := v.get(s.base + href)
	login, err := oidcrptest.SignIn(resp, opBody, user)
	if err != nil {
		v.t.Fatal(err)
	}
	r, err := v.c.Do(login)
	if err != nil {
		v.t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b), v.last
}

func (s *providerSite) whoami(v *visitor) string {
	v.t.Helper()
	_, body, _ := v.get(s.base + "/app")
	return body
}

// The journey, over real HTTP against a real OP: a guest
// continues with the provider and becomes a member with the same id;
// signed out, the provider signs the same member in; a second guest
// continuing with the same identity is merged into it.
func TestProviderJourney(t *testing.T) {
	t.Parallel()
	s := newProviderSite(t)
	v := newVisitor(t)
	if code, _ := v.post(s.base+"/auth/guest", url.Values{"return_to": {"/app"}}); code != http.StatusOK {
		t.Fatalf("guest: %d", code)
	}
	guest := s.whoami(v)
	guestID, _, _ := strings.Cut(guest, " ")
	if !strings.Contains(guest, "guest-user") {
		t.Fatalf("guest: %q", guest)
	}
	code, body, _ := s.continueWith(v, "/auth/signup?return_to=/app", "alice", false)
	if code != http.StatusOK || body != guestID+" normal-user alice" {
		t.Fatalf("after Continue with: %d %q; want %s normal-user alice", code, body, guestID)
	}

	// Signed out, then again: the same member.
	if code, _ := v.post(s.base+"/auth/signout", url.Values{}); code != http.StatusOK {
		t.Fatalf("sign out: %d", code)
	}
	if got := s.whoami(v); got != "anonymous" {
		t.Fatalf("after sign-out: %q", got)
	}
	if _, body, _ := s.continueWith(v, "/auth/signin?return_to=/app", "alice", false); body != guestID+" normal-user alice" {
		t.Fatalf("signing in again: %q", body)
	}

	// A second guest, in another browser, with the same identity: merged.
	v2 := newVisitor(t)
	v2.post(s.base+"/auth/guest", url.Values{})
	second, _, _ := strings.Cut(s.whoami(v2), " ")
	if _, body, _ := s.continueWith(v2, "/auth/signin?return_to=/app", "alice", false); body != guestID+" normal-user alice" {
		t.Fatalf("second guest: %q", body)
	}
	if second == guestID {
		t.Fatal("the second guest was the first")
	}

	// The account page lists the link, and offers no "Link" for the
	// provider already linked; the only way in cannot be removed, and the
	// refusal's page still lists it.
	_, acct, _ := v.get(s.base + "/auth/account")
	if !strings.Contains(acct, "Test IdP: linked") || !strings.Contains(acct, `name="action" value="unlink"`) || strings.Contains(acct, "Link Test IdP") {
		t.Fatalf("account page: %.2000s", acct)
	}
	code, page := v.post(s.base+"/auth/account", url.Values{"action": {"unlink"}, "issuer": {s.p.Providers[0].RP.Issuer()}, "subject": {"u1"}})
	if code == http.StatusOK || !strings.Contains(page, "only way to sign in") || !strings.Contains(page, "Test IdP: linked") || strings.Contains(page, "Link Test IdP") {
		t.Fatalf("unlinking the last way in: %d %.1500s", code, page)
	}
}

// Refusals: a callback whose state is unknown, one replayed, one from
// another browser (no binding cookie): each an error page, nobody signed
// in.
func TestProviderCallbackRefusals(t *testing.T) {
	t.Parallel()
	s := newProviderSite(t)
	v := newVisitor(t)
	_, _, cb := s.continueWith(v, "/auth/signin", "bob", true)
	if cb == nil {
		t.Fatal("no callback")
	}
	// Bad state.
	bad := *cb
	q := bad.Query()
	q.Set("state", strings.Repeat("A", 43))
	bad.RawQuery = q.Encode()
	code, body, _ := v.get(bad.String())
	if code != http.StatusBadRequest || !strings.Contains(body, "expired or was already used") {
		t.Fatalf("bad state: %d %.500s", code, body)
	}
	// Another browser (no binding cookie) with the real callback: refused,
	// and the state is spent by it.
	other := newVisitor(t)
	code, body, _ = other.get(cb.String())
	if code != http.StatusBadRequest || !strings.Contains(body, "started in another browser") || s.whoami(other) != "anonymous" {
		t.Fatalf("another browser: %d %.500s", code, body)
	}
	// Replayed: the state was taken.
	code, body, _ = v.get(cb.String())
	if code != http.StatusBadRequest || !strings.Contains(body, "expired or was already used") || s.whoami(v) != "anonymous" {
		t.Fatalf("replayed: %d %.500s", code, body)
	}
	// A finished sign-in replayed: the state is spent.
	_, _, cb2 := s.continueWith(v, "/auth/signin", "bob", true)
	if code, _, _ := v.get(cb2.String()); code != http.StatusOK {
		t.Fatalf("sign-in: %d", code)
	}
	member := s.whoami(v)
	if !strings.Contains(member, "normal-user bob") {
		t.Fatalf("member %q", member)
	}
	code, body, _ = v.get(cb2.String())
	if code != http.StatusBadRequest || !strings.Contains(body, "expired or was already used") || s.whoami(v) != member {
		t.Fatalf("replayed after success: %d %.300s", code, body)
	}
	// Unknown provider, unknown step.
	for _, path := range []string{"/auth/provider/nope/start", "/auth/provider/testidp/other"} {
		if code, _, _ := v.get(s.base + path); code != http.StatusNotFound {
			t.Fatalf("%s: %d", path, code)
		}
	}
}

package pages

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	_ "github.com/guestauth/caddy-guestauth/storage/bolt" // the default kind
)

// newPages is Pages over a real Service on a real bbolt store, whose guest
// creation allows one guest per address at once.
func newPages(t *testing.T) *Pages {
	t.Helper()
	return newPagesWith(t, 1)
}

// newPagesWith is newPages allowing guestBurst guests per address at once.
func newPagesWith(t *testing.T, guestBurst int) *Pages {
	t.Helper()
	return newPagesCfg(t, guestBurst, nil)
}

// newPagesCfg is newPagesWith with mod applied to the Service's config.
func newPagesCfg(t *testing.T, guestBurst int, mod func(st storage.Backend, cfg *accounts.Config)) *Pages {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "g.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	cfg := accounts.Config{
		Alg: jwa.ES256, AccessTTL: time.Hour, SessionIdle: time.Hour, SessionLifetime: 2 * time.Hour,
		Guests: accounts.GuestLimits{PerIP: accounts.Limit{Burst: guestBurst, Interval: time.Hour}},
		// As the module's default: a guest's first session is unconfirmed.
		BrowserUnconfirmed: 10 * time.Minute,
		// Cheap hashes: these tests are about the pages, not the cost.
		Argon2: accounts.Argon2Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1},
	}
	if mod != nil {
		mod(st, &cfg)
	}
	svc, err := accounts.New(ctx, st, keys, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	ip := func(*http.Request) string { return "192.0.2.1" }
	return &Pages{
		Accounts: svc, Prefix: "/auth/", CookieName: "guestauth_session", Templates: tmpl,
		Issuer: func(*http.Request) string { return "https://app.example" }, ClientIP: ip, LimitKey: ip,
		ReadTimeout: 10 * time.Second, Logger: zap.NewNop(), Now: time.Now,
	}
}

// browser is one visitor: its cookie, kept between requests.
type browser struct {
	t      *testing.T
	p      *Pages
	cookie string
}

func (b *browser) do(method, path string, form url.Values, site string) *httptest.ResponseRecorder {
	b.t.Helper()
	r := httptest.NewRequest(method, "http://app.example"+path, strings.NewReader(form.Encode()))
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if site != "" {
		r.Header.Set("Sec-Fetch-Site", site)
	}
	if b.cookie != "" {
		r.Header.Set("Cookie", "guestauth_session="+b.cookie)
	}
	w := httptest.NewRecorder()
	if err := b.p.Serve(w, r); err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == "guestauth_session" {
			b.cookie = c.Value
			if c.MaxAge < 0 {
				b.cookie = ""
			}
		}
	}
	return w
}

// A visitor's way through the pages: every answer's status, where it
// goes, and what it shows.
func TestPagesJourney(t *testing.T) {
	b := &browser{t: t, p: newPages(t)}
	for _, c := range []struct {
		name, method, path string
		form               url.Values
		site               string // Sec-Fetch-Site
		status             int
		location, body     string
		session            bool // a session cookie is held afterwards
	}{
		{"sign-in page", "GET", "/auth/signin?return_to=/app", nil, "", 200, "", `autocomplete="current-password"`, false},
		{"no such page", "GET", "/auth/nope", nil, "", 404, "", "There is no such page.", false},
		{"method", "PUT", "/auth/signin", nil, "", 405, "", "This method is not allowed here.", false},
		{"stylesheet", "GET", "/auth/style.css", nil, "", 200, "", "", false},
		{"no site stylesheet", "GET", "/auth/site.css", nil, "", 404, "", "", false},
		{"account needs a session", "GET", "/auth/account", nil, "", 303, "/auth/signin?return_to=%2Fauth%2Faccount", "", false},
		{"cross-site form", "POST", "/auth/guest", url.Values{"return_to": {"/app"}}, "cross-site", 403, "", "sent from another site", false},
		{"continue as a guest", "POST", "/auth/guest", url.Values{"return_to": {"/app"}}, "same-origin", 303, "/app", "", true},
		{"account of the guest", "GET", "/auth/account", nil, "", 200, "", "a guest, with no username or password yet", true},
		{"sign up keeps the guest", "POST", "/auth/signup", url.Values{"username": {"olive"}, "password": {"correct horse battery"}, "return_to": {"//evil.example"}}, "same-origin", 303, "/", "", true},
		{"account of olive", "GET", "/auth/account", nil, "", 200, "", "olive", true},
		{"nothing to change", "POST", "/auth/account", url.Values{"action": {"other"}}, "same-origin", 400, "", "Choose what to change.", true},
		{"sign out", "POST", "/auth/signout", url.Values{}, "same-origin", 303, "/", "", false},
		{"wrong password", "POST", "/auth/signin", url.Values{"username": {"olive"}, "password": {"wrong password!"}}, "same-origin", 400, "", `value="olive"`, false},
		{"sign in", "POST", "/auth/signin", url.Values{"username": {"olive"}, "password": {"correct horse battery"}, "return_to": {"/app?x=1"}}, "same-origin", 303, "/app?x=1", "", true},
	} {
		w := b.do(c.method, c.path, c.form, c.site)
		if w.Code != c.status || w.Header().Get("Location") != c.location || !strings.Contains(w.Body.String(), c.body) || (b.cookie != "") != c.session {
			t.Fatalf("%s: %d Location %q session %v\n%s", c.name, w.Code, w.Header().Get("Location"), b.cookie != "", w.Body)
		}
		if ct := w.Header().Get("Content-Type"); c.status != 303 && c.path != "/auth/style.css" && c.path != "/auth/site.css" &&
			(ct != "text/html; charset=utf-8" || !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'none'")) {
			t.Fatalf("%s: Content-Type %q, CSP %q", c.name, ct, w.Header().Get("Content-Security-Policy"))
		}
	}
}

// A cookie that names no session, or one sent twice, is no session: it is
// cleared and the visitor goes on without one; only a store failure is an
// error.
func TestIdentityOfUnusableCookies(t *testing.T) {
	p := newPages(t)
	for _, cookie := range []string{"guestauth_session=forged.handle.mac", "guestauth_session=a; guestauth_session=b"} {
		r := httptest.NewRequest(http.MethodGet, "/app", nil)
		r.Header.Set("Cookie", cookie)
		w := httptest.NewRecorder()
		id, err := p.Identity(w, r)
		cs := w.Result().Cookies()
		if id != nil || err != nil || len(cs) != 1 || cs[0].MaxAge >= 0 {
			t.Fatalf("%s: %v, %v, cookies %v; want none, cleared", cookie, id, err, cs)
		}
	}
}

// A lazily created guest gets its cookie; beyond the guest limit the
// request goes on without identity, or, when one is required, is
// answered 429 with Retry-After.
func TestLazyGuest(t *testing.T) {
	p := newPages(t)
	lazy := func(required bool) (*httptest.ResponseRecorder, *accounts.Identity, bool) {
		t.Helper()
		w := httptest.NewRecorder()
		id, answered, err := p.LazyGuest(w, httptest.NewRequest(http.MethodGet, "/app", nil), required)
		if err != nil {
			t.Fatal(err)
		}
		return w, id, answered
	}
	w, id, answered := lazy(true)
	if id == nil || answered || len(w.Result().Cookies()) != 1 || !id.User.IsAnonymous() {
		t.Fatalf("first guest: %+v answered %v cookies %v", id, answered, w.Result().Cookies())
	}
	if w, id, answered = lazy(false); id != nil || answered || w.Code != 200 || len(w.Result().Cookies()) != 0 {
		t.Fatalf("over the limit, not required: %+v answered %v %d", id, answered, w.Code)
	}
	if w, id, answered = lazy(true); id != nil || !answered || w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("over the limit, required: %+v answered %v %d Retry-After %q", id, answered, w.Code, w.Header().Get("Retry-After"))
	}
}

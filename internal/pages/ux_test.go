package pages

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// events is what a Service reported, for the tests that look.
type reported struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *reported) observe(_ context.Context, ev events.Event, _ bool) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

func (r *reported) ofType(typ string) []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []events.Event
	for _, ev := range r.evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// newSitePages is newPages over a Service of its own that reserves the
// default names and reports its events to rep.
func newSitePages(t *testing.T, rep *reported) *Pages {
	t.Helper()
	p := newPages(t)
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "site.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	p.Accounts, err = accounts.New(ctx, st, keys, accounts.Config{
		Alg: jwa.ES256, AccessTTL: time.Hour, SessionIdle: time.Hour, SessionLifetime: 2 * time.Hour,
		ReservedNames: accounts.DefaultReservedNames, Observer: rep.observe,
		Argon2: accounts.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (b *browser) body(method, path string, form url.Values) (int, string) {
	b.t.Helper()
	w := b.do(method, path, form, "same-origin")
	return w.Code, w.Body.String()
}

// Every page names the site in its title and header and links to the app:
// the request's host and / by default, the configured ones otherwise.
func TestPagesNameTheSite(t *testing.T) {
	for _, c := range []struct {
		site, home         string
		wantName, wantHome string
	}{
		{"", "", "app.example", "/"},
		{"Acme <Shop>", "https://app.example/start?x=1&y=2", "Acme &lt;Shop&gt;", "https://app.example/start?x=1&amp;y=2"},
	} {
		p := newPages(t)
		p.SiteName, p.Home = c.site, c.home
		b := &browser{t: t, p: p}
		pages := []string{"/auth/signin", "/auth/signup", "/auth/guest", "/auth/signout", "/auth/nope"}
		for i, path := range append(pages, "/auth/account", "/auth/signout", "/auth/signup") {
			if i == len(pages) {
				b.do("POST", "/auth/guest", url.Values{}, "same-origin") // the same pages with a session
			}
			w := b.do("GET", path, nil, "same-origin")
			body := w.Body.String()
			// CSP-strict: nothing inline the policy would refuse.
			if !strings.HasPrefix(w.Header().Get("Content-Security-Policy"), "default-src 'none'") || regexp.MustCompile(`<script|<style|\sstyle=|\son[a-z]+=`).MatchString(body) {
				t.Errorf("%s: CSP %q, or inline script or style:\n%s", path, w.Header().Get("Content-Security-Policy"), body)
			}
			title := regexp.MustCompile(`<title>([^<]*)</title>`).FindStringSubmatch(body)
			if title == nil || !strings.HasSuffix(title[1], " · "+c.wantName) {
				t.Errorf("%s: title %q, want it to end with the site name %q", path, title, c.wantName)
			}
			if !strings.Contains(body, `<a class="site" href="`+c.wantHome+`">`+c.wantName+`</a>`) {
				t.Errorf("%s: no link to the app %q named %q:\n%s", path, c.wantHome, c.wantName, body)
			}
		}
	}
	if got := hostName("[::1]:8080"); got != "::1" {
		t.Errorf("hostName of an IPv6 host: %q", got)
	}
}

// Sent to sign-in or sign-up from a page that needs an account, the visitor
// is told where they were going: the path percent-encoded (no text can pass
// for the page's own words), without the query, shortened, and only for a
// same-origin return_to.
func TestPagesSayWhereTheVisitorWasGoing(t *testing.T) {
	b := &browser{t: t, p: newPages(t)}
	long := "/" + strings.Repeat("a", 100)
	for _, c := range []struct{ page, returnTo, want string }{
		{"signup", "/members/", "Sign up or sign in to continue to <code>/members/</code>."},
		{"signin", "/members/area?x=1", "Sign in or sign up to continue to <code>/members/area</code>."},
		{"signup", "/members/<script>alert(1)</script>", "continue to <code>/members/%3Cscript%3Ealert%281%29%3C/script%3E</code>."},
		{"signin", "/Your account is locked. Call 555-0100", "continue to <code>/Your%20account%20is%20locked.%20Call%20555-0100</code>."},
		{"signin", long, "continue to <code>" + long[:maxContinue-1] + "…</code>."},
		{"signin", "/" + strings.Repeat("a", 57) + "ü", "continue to <code>/" + strings.Repeat("a", 57) + "…</code>."},
		{"signup", "https://evil.example/members/", ""},
		{"signup", "//evil.example/members/", ""},
		{"signin", "/", ""},
		{"signin", "", ""},
	} {
		status, body := b.body("GET", "/auth/"+c.page+"?"+url.Values{"return_to": {c.returnTo}}.Encode(), nil)
		has := strings.Contains(body, `class="notice"`)
		if status != 200 || (c.want == "") == has || c.want != "" && !strings.Contains(body, c.want) {
			t.Errorf("%s return_to %q: %d, notice %v, want %q", c.page, c.returnTo, status, has, c.want)
		}
		if strings.Contains(body, "<script>") {
			t.Errorf("%s return_to %q: unescaped", c.page, c.returnTo)
		}
	}
}

// idOf finds the element with id in body and returns its start tag.
func tagOf(t *testing.T, body, id string) string {
	t.Helper()
	m := regexp.MustCompile(`<[a-z]+ [^>]*id="` + regexp.QuoteMeta(id) + `"[^>]*>`).FindString(body)
	if m == "" {
		t.Fatalf("no element #%s in\n%s", id, body)
	}
	return m
}

// Sign-up states the rules before the form is sent (internal/accounts'
// limits) and refuses every field at fault at once, each message next to
// its field and tied to it (aria-describedby, aria-invalid); the name is
// refilled, never the password.
func TestSignUpShowsEveryErrorAtOnce(t *testing.T) {
	b := &browser{t: t, p: newSitePages(t, &reported{})}
	_, page := b.body("GET", "/auth/signup", nil)
	rules := []string{
		fmt.Sprintf("%d to %d characters: %s, starting with a letter or digit.", accounts.MinNameLength, accounts.MaxNameLength, accounts.NameCharacters),
		fmt.Sprintf("%d to %d characters.", accounts.MinPasswordLength, accounts.MaxPasswordLength),
		fmt.Sprintf(`minlength="%d" maxlength="%d"`, accounts.MinPasswordLength, accounts.MaxPasswordLength),
	}
	for _, r := range rules {
		if !strings.Contains(page, r) {
			t.Errorf("sign-up page does not state %q", r)
		}
	}
	if in := tagOf(t, page, "password"); !strings.Contains(in, `aria-describedby="password-hint"`) || strings.Contains(in, "aria-invalid") {
		t.Errorf("password field before sending: %s", in)
	}

	for _, c := range []struct {
		name, password string
		status         int
		fields         map[string]string // field id → its message
	}{
		{"admin", "short", 400, map[string]string{"username": `The username &#34;admin&#34; is reserved.`, "password": "A password must be 8 to 128 characters."}},
		{"guest_me", "", 400, map[string]string{"username": "reserved for guests", "password": "A password must be 8 to 128 characters."}},
		{"b!", "long enough pw", 400, map[string]string{"username": "A username must be 3 to 64 characters."}},
		{"bob", "short", 400, map[string]string{"password": "A password must be 8 to 128 characters."}},
	} {
		v := &browser{t: t, p: b.p}
		status, body := v.body("POST", "/auth/signup", url.Values{"username": {c.name}, "password": {c.password}})
		if status != c.status || v.cookie != "" {
			t.Fatalf("%s/%s: %d, session %v", c.name, c.password, status, v.cookie != "")
		}
		for _, id := range []string{"username", "password"} {
			in := tagOf(t, body, id)
			msg, bad := c.fields[id]
			if !bad {
				if strings.Contains(in, "aria-invalid") || strings.Contains(body, `id="`+id+`-error"`) {
					t.Errorf("%s/%s: %s marked though fine: %s", c.name, c.password, id, in)
				}
				continue
			}
			errTag := tagOf(t, body, id+"-error")
			at := strings.Index(body, errTag)
			if !strings.Contains(in, `aria-invalid="true"`) || !strings.Contains(in, `aria-describedby="`+id+`-hint `+id+`-error"`) ||
				!strings.Contains(body[at:at+300], msg) || at > strings.Index(body, in) || strings.Index(body, `<label for="`+id+`"`) > at {
				t.Errorf("%s/%s: %s's error %q not between its label and its field: %s\n%s", c.name, c.password, id, msg, in, body)
			}
			// The summary at the top links to the field.
			if !strings.Contains(body, `<li><a href="#`+id+`">`) {
				t.Errorf("%s/%s: summary does not link #%s", c.name, c.password, id)
			}
		}
		if !strings.Contains(tagOf(t, body, "username"), `value="`+c.name+`"`) && c.name != "b!" {
			t.Errorf("%s: name not refilled", c.name)
		}
		if c.password != "" && strings.Contains(body, c.password+`"`) {
			t.Errorf("%s: password shown again", c.name)
		}
	}
	// The store's own refusal (a taken name) is a field error too.
	first := &browser{t: t, p: b.p}
	if status, body := first.body("POST", "/auth/signup", url.Values{"username": {"carol"}, "password": {"long enough pw"}}); status != 303 {
		t.Fatalf("sign-up: %d %s", status, body)
	}
	status, body := (&browser{t: t, p: b.p}).body("POST", "/auth/signup", url.Values{"username": {"Carol"}, "password": {"long enough pw"}})
	if status != 409 || !strings.Contains(tagOf(t, body, "username-error"), "field-error") || !strings.Contains(body, `The username &#34;Carol&#34; is taken.`) {
		t.Fatalf("taken: %d\n%s", status, body)
	}
}

// A guest is shown as Guest and a short id (the end of its UUIDv7, which
// is random), the full id only on the account page; signing out a guest
// warns and offers to sign up instead.
func TestGuestDisplayAndSignOutWarning(t *testing.T) {
	b := &browser{t: t, p: newPages(t)}
	b.do("POST", "/auth/guest", url.Values{}, "same-origin")
	_, account := b.body("GET", "/auth/account", nil)
	id := regexp.MustCompile(`<code>([0-9a-f-]{36})</code>`).FindStringSubmatch(account)
	if id == nil {
		t.Fatalf("account page has no full id:\n%s", account)
	}
	short := "Guest " + strings.ReplaceAll(id[1], "-", "")[24:]
	for _, path := range []string{"/auth/account", "/auth/signup", "/auth/signout", "/auth/guest", "/auth/nope"} {
		_, body := b.body("GET", path, nil)
		if !strings.Contains(body, "Signed in as <strong>"+short+"</strong>") || strings.Contains(body, "guest_") {
			t.Errorf("%s: footer does not show %q:\n%s", path, short, body)
		}
		if path != "/auth/account" && strings.Contains(body, id[1]) {
			t.Errorf("%s shows the full id", path)
		}
	}
	_, signout := b.body("GET", "/auth/signout?return_to=/cart", nil)
	if !strings.Contains(signout, `class="warning"`) || !strings.Contains(signout, `<a class="button" href="/auth/signup?return_to=%2fcart">Sign up instead</a>`) ||
		!strings.Contains(signout, "Sign out anyway</button>") {
		t.Fatalf("guest sign-out page:\n%s", signout)
	}
	// A registered user: no warning, no offer.
	if status, body := b.body("POST", "/auth/signup", url.Values{"username": {"dora"}, "password": {"long enough pw"}}); status != 303 {
		t.Fatalf("sign-up: %d %s", status, body)
	}
	_, signout = b.body("GET", "/auth/signout", nil)
	if strings.Contains(signout, "warning") || strings.Contains(signout, "instead") || !strings.Contains(signout, "Signed in as <strong>dora</strong>") {
		t.Fatalf("member sign-out page:\n%s", signout)
	}
}

// A page under the prefix that does not exist shows the visitor's real
// session state.
func TestNotFoundShowsTheSession(t *testing.T) {
	b := &browser{t: t, p: newPages(t)}
	status, body := b.body("GET", "/auth/nope", nil)
	if status != 404 || !strings.Contains(body, "Not signed in.") {
		t.Fatalf("without a session: %d\n%s", status, body)
	}
	b.do("POST", "/auth/guest", url.Values{}, "same-origin")
	status, body = b.body("GET", "/auth/nope", nil)
	if status != 404 || !strings.Contains(body, "Signed in as <strong>Guest ") || !strings.Contains(body, "There is no such page.") {
		t.Fatalf("with a guest session: %d\n%s", status, body)
	}
	if status, body = b.body("GET", "/auth/account/x", nil); status != 404 || !strings.Contains(body, "Signed in as") {
		t.Fatalf("below a page: %d\n%s", status, body)
	}
}

// Delete my account: a guest confirms with the box, a registered user with
// the password; the user and its session go, user.deleted is reported,
// the browser lands on the app without a session. A cross-site form
// deletes nothing.
func TestDeleteMyAccount(t *testing.T) {
	rep := &reported{}
	p := newSitePages(t, rep)
	p.Home = "/start"
	b := &browser{t: t, p: p}
	b.do("POST", "/auth/guest", url.Values{}, "same-origin")
	guest := b.cookie

	// Without the box ticked: asked again, nothing deleted.
	status, body := b.body("POST", "/auth/account", url.Values{"action": {"delete"}})
	if status != 400 || !strings.Contains(tagOf(t, body, "delete_confirm"), `aria-invalid="true"`) || !strings.Contains(body, "Tick the box") || b.cookie != guest {
		t.Fatalf("unconfirmed: %d\n%s", status, body)
	}
	// From another site: refused.
	if w := b.do("POST", "/auth/account", url.Values{"action": {"delete"}, "confirm": {"yes"}}, "cross-site"); w.Code != 403 || b.cookie != guest {
		t.Fatalf("cross-site: %d", w.Code)
	}
	if n := len(rep.ofType(events.UserDeleted)); n != 0 {
		t.Fatalf("%d deletions so far", n)
	}
	w := b.do("POST", "/auth/account", url.Values{"action": {"delete"}, "confirm": {"yes"}}, "same-origin")
	if w.Code != 303 || w.Header().Get("Location") != "/start" || b.cookie != "" {
		t.Fatalf("confirmed: %d %q, session %v", w.Code, w.Header().Get("Location"), b.cookie != "")
	}
	if evs := rep.ofType(events.UserDeleted); len(evs) != 1 || evs[0].Data["cause"] != accounts.CauseSelf {
		t.Fatalf("events %+v", evs)
	}
	// The old cookie is no session any more.
	old := &browser{t: t, p: p, cookie: guest}
	if status, body := old.body("GET", "/auth/account", nil); status != 303 || old.cookie != "" {
		t.Fatalf("the deleted guest's cookie: %d %s", status, body)
	}

	// A registered user.
	b.do("POST", "/auth/signup", url.Values{"username": {"erin"}, "password": {"erin's password"}}, "same-origin")
	_, page := b.body("GET", "/auth/account", nil)
	if in := tagOf(t, page, "delete_password"); !strings.Contains(in, `autocomplete="current-password"`) || strings.Contains(page, `id="delete_confirm"`) {
		t.Fatalf("member's delete form: %s", in)
	}
	for _, pw := range []string{"", "wrong password"} {
		status, body := b.body("POST", "/auth/account", url.Values{"action": {"delete"}, "current_password": {pw}})
		if status != 400 || !strings.Contains(tagOf(t, body, "delete_password"), `aria-invalid="true"`) || strings.Contains(body, "wrong password\"") || b.cookie == "" {
			t.Fatalf("wrong password %q: %d\n%s", pw, status, body)
		}
	}
	w = b.do("POST", "/auth/account", url.Values{"action": {"delete"}, "current_password": {"erin's password"}}, "same-origin")
	if w.Code != 303 || w.Header().Get("Location") != "/start" || b.cookie != "" {
		t.Fatalf("member deletion: %d %q", w.Code, w.Header().Get("Location"))
	}
	if evs := rep.ofType(events.UserDeleted); len(evs) != 2 || evs[1].Data["name"] != "erin" {
		t.Fatalf("events %+v", evs)
	}
	if status, _ := (&browser{t: t, p: p}).body("POST", "/auth/signin", url.Values{"username": {"erin"}, "password": {"erin's password"}}); status != http.StatusBadRequest {
		t.Fatalf("the deleted user signs in: %d", status)
	}
}

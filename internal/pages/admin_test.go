package pages

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// newAdminPages is Pages with the dashboard for the admin "boss", over a
// real bbolt store, observing the Service's events.
func newAdminPages(t *testing.T) (*Pages, *[]events.Event, *observer.ObservedLogs) {
	t.Helper()
	var evs []events.Event
	var st storage.Backend
	p := newPagesCfg(t, 100, func(s storage.Backend, cfg *accounts.Config) {
		st = s
		cfg.Observer = func(_ context.Context, ev events.Event, _ bool) { evs = append(evs, ev) }
	})
	core, logs := observer.New(zap.InfoLevel)
	p.Logger = zap.New(core)
	p.Admins = []string{model.NameKey("Boss")}
	p.AdminStore = st.(AdminStore)
	p.GuestTTL = 30 * 24 * time.Hour
	return p, &evs, logs
}

func signUp(t *testing.T, p *Pages, name string) *browser {
	t.Helper()
	b := &browser{t: t, p: p}
	if w := b.do("POST", "/auth/signup", url.Values{"username": {name}, "password": {"correct horse battery"}}, "same-origin"); w.Code != http.StatusSeeOther {
		t.Fatalf("sign-up of %s: %d\n%s", name, w.Code, w.Body)
	}
	return b
}

// The dashboard: 404, as for a page that does not exist, to visitors,
// guests and members not named in admins, for every admin path and
// method; the admin sees the population, the day's counts, the charts (SVG
// without script or inline style) and their tables; finds users by id, name
// and verified email; keeps, unkeeps, revokes and (after confirming)
// deletes, each CSRF-checked, logged with the admin and reported with
// data.admin.
func TestAdminDashboard(t *testing.T) {
	p, evs, logs := newAdminPages(t)
	visitor := &browser{t: t, p: p}
	guest := &browser{t: t, p: p}
	if w := guest.do("POST", "/auth/guest", url.Values{}, "same-origin"); w.Code != http.StatusSeeOther {
		t.Fatalf("guest: %d", w.Code)
	}
	member := signUp(t, p, "mallory")
	admin := signUp(t, p, "boss")
	notFound := func(b *browser, who string) {
		t.Helper()
		for _, c := range []struct{ method, path string }{
			{"GET", "/auth/admin/"}, {"GET", "/auth/admin"}, {"GET", "/auth/admin/users?q=boss"}, {"GET", "/auth/admin/user?id=x"},
			{"POST", "/auth/admin/user"}, {"GET", "/auth/admin/nope"},
		} {
			w := b.do(c.method, c.path, url.Values{"id": {"x"}, "action": {"delete"}, "confirm": {"yes"}}, "same-origin")
			if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "There is no such page.") || strings.Contains(w.Body.String(), "Dashboard") {
				t.Fatalf("%s: %s %s: %d\n%s", who, c.method, c.path, w.Code, w.Body)
			}
		}
	}
	notFound(visitor, "visitor")
	notFound(guest, "guest")
	notFound(member, "member")
	// The admin, but a path that does not exist, is 404 too.
	if w := admin.do("GET", "/auth/admin/nope", nil, ""); w.Code != http.StatusNotFound {
		t.Fatalf("admin on an unknown admin path: %d", w.Code)
	}

	// The address without its slash leads the admin (only) to the dashboard.
	if w := admin.do("GET", "/auth/admin", nil, ""); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/auth/admin/" {
		t.Fatalf("admin on /auth/admin: %d %q", w.Code, w.Header().Get("Location"))
	}

	w := admin.do("GET", "/auth/admin/", nil, "")
	body := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("dashboard: %d\n%s", w.Code, body)
	}
	// Three guests were created today: the guest, and one for each sign-up,
	// which made it a member (by password).
	for _, want := range []string{`id="now-guests">1<`, `id="now-members">2<`, `id="win-created">3<`, `id="win-upgraded">2<`, "password <strong>2</strong>", "<svg", `role="img"`, "<table>", "Guests created per day"} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %s", want)
		}
	}
	if strings.Contains(body, "<script") || strings.Contains(body, "style=") {
		t.Fatal("the dashboard has inline script or style")
	}
	if csp := w.Header().Get("Content-Security-Policy"); csp != p.csp() {
		t.Fatalf("CSP %q", csp)
	}
	if w := admin.do("GET", "/auth/admin/?days=90", nil, ""); w.Code != 200 || !strings.Contains(w.Body.String(), "The last 90 days") {
		t.Fatalf("90 days: %d", w.Code)
	}

	// Find the member by name, any case.
	w = admin.do("GET", "/auth/admin/users?q=MALLORY", nil, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), ">mallory</a>") {
		t.Fatalf("search: %d\n%s", w.Code, w.Body)
	}
	// And by the start of a name: "MAL" finds mallory, "b" finds boss,
	// not mallory.
	if w := admin.do("GET", "/auth/admin/users?q=MAL", nil, ""); !strings.Contains(w.Body.String(), ">mallory</a>") {
		t.Fatalf("search by a name's start:\n%s", w.Body)
	}
	if w := admin.do("GET", "/auth/admin/users?q=b", nil, ""); !strings.Contains(w.Body.String(), ">boss</a>") || strings.Contains(w.Body.String(), ">mallory</a>") {
		t.Fatalf("search by b:\n%s", w.Body)
	}
	mid := member.identity().User.ID
	if w := admin.do("GET", "/auth/admin/users?q="+mid, nil, ""); !strings.Contains(w.Body.String(), "admin/user?id="+mid) {
		t.Fatalf("search by id:\n%s", w.Body)
	}
	if w := admin.do("GET", "/auth/admin/users?q=nobody", nil, ""); !strings.Contains(w.Body.String(), "No user has") {
		t.Fatalf("search for nobody:\n%s", w.Body)
	}
	// A linked provider shows on the user page.
	link := model.IdentityLink{Issuer: "https://idp.example", Subject: "sub-1", UserID: mid, Provider: "Example ID", LinkedAt: time.Now()}
	if _, err := p.AdminStore.(storage.Backend).LinkIdentity(context.Background(), link, func(*model.User) error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
	w = admin.do("GET", "/auth/admin/user?id="+mid, nil, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `id="user-tag">normal-user<`) || !strings.Contains(w.Body.String(), `<table id="sessions">`) ||
		!strings.Contains(w.Body.String(), "Example ID (<code>https://idp.example</code>, subject <code>sub-1</code>)") {
		t.Fatalf("user page: %d\n%s", w.Code, w.Body)
	}
	// A member with a password never expires: no "Keep" offered; the
	// pages' own session is named as such.
	if b := w.Body.String(); strings.Contains(b, `id="keep"`) || !strings.Contains(b, "<th scope=\"row\">browser (these pages)</th>") {
		t.Fatalf("user page of a member: Keep offered or the browser session unnamed\n%s", b)
	}

	act := func(action string, extra url.Values, site string) *http.Response {
		t.Helper()
		f := url.Values{"id": {mid}, "action": {action}}
		for k, v := range extra {
			f[k] = v
		}
		return admin.do("POST", "/auth/admin/user", f, site).Result()
	}
	// CSRF: a cross-site form is refused and changes nothing.
	*evs = nil
	if r := act("delete", url.Values{"confirm": {"yes"}}, "cross-site"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site delete: %d", r.StatusCode)
	}
	if _, err := p.AdminStore.GetUser(context.Background(), mid); err != nil || len(*evs) != 0 {
		t.Fatalf("after a cross-site delete: %v, events %v", err, *evs)
	}
	if r := act("keep", nil, "same-origin"); r.StatusCode != http.StatusSeeOther || !strings.Contains(r.Header.Get("Location"), "done=kept") {
		t.Fatalf("keep: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if u, _ := p.AdminStore.GetUser(context.Background(), mid); !u.Kept {
		t.Fatal("not kept")
	}
	if r := act("unkeep", nil, "same-origin"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("unkeep: %d", r.StatusCode)
	}
	if r := act("revoke", nil, "same-origin"); r.StatusCode != http.StatusSeeOther || !strings.Contains(r.Header.Get("Location"), "done=revoked&n=1") {
		t.Fatalf("revoke: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if w := member.do("GET", "/auth/account", nil, ""); w.Code != http.StatusSeeOther {
		t.Fatalf("the member's session survived the revocation: %d", w.Code)
	}
	// Delete asks first.
	w = admin.do("POST", "/auth/admin/user", url.Values{"id": {mid}, "action": {"delete"}}, "same-origin")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `id="confirm-delete"`) {
		t.Fatalf("delete without confirming: %d\n%s", w.Code, w.Body)
	}
	if _, err := p.AdminStore.GetUser(context.Background(), mid); err != nil {
		t.Fatalf("deleted without confirmation: %v", err)
	}
	if r := act("delete", url.Values{"confirm": {"yes"}}, "same-origin"); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d", r.StatusCode)
	}
	if _, err := p.AdminStore.GetUser(context.Background(), mid); err == nil {
		t.Fatal("not deleted")
	}
	var types []string
	for _, ev := range *evs {
		if ev.Data["admin"] != "boss" || ev.Data["cause"] != "dashboard" {
			t.Errorf("event %s without the acting admin: %v", ev.Type, ev.Data)
		}
		types = append(types, ev.Type)
	}
	if strings.Join(types, " ") != "user.kept user.kept session.revoked user.deleted" {
		t.Fatalf("events %v", types)
	}
	if n := logs.FilterMessage("admin action").FilterField(zap.String("admin", "boss")).Len(); n != 4 {
		t.Fatalf("%d admin actions logged, want 4", n)
	}
	w = admin.do("GET", "/auth/admin/", nil, "")
	if !strings.Contains(w.Body.String(), `id="win-deleted">1<`) {
		t.Fatalf("the deletion is not counted:\n%s", w.Body)
	}
}

// identity is the browser's signed-in identity.
func (b *browser) identity() *accounts.Identity {
	b.t.Helper()
	r, _ := http.NewRequest("GET", "http://app.example/", nil)
	r.Header.Set("Cookie", "guestauth_session="+b.cookie)
	id, _, err := b.p.Accounts.BrowserAuthenticate(r.Context(), b.cookie, "https://app.example")
	if err != nil || id == nil {
		b.t.Fatalf("identity: %v", err)
	}
	return id
}

package e2e

// The admin dashboard (issue 21) in a real Chromium over a real Caddy:
// after a scripted population (N guests, M of them signed up, K deleted)
// the admin sees the numbers and the charts; a member who is not an admin
// gets the 404 page; the pages are axe-clean in light and dark; search and
// each action work, and a cross-site action is refused. Run on bbolt, and
// on PostgreSQL when GUEST_AUTH_TEST_POSTGRES is set. With
// GUESTAUTH_SCREENSHOTS set, the pages are kept there.

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

func TestChromiumDashboard(t *testing.T) {
	for _, backend := range []string{"bolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			needChromium(t)
			axe := axeSource(t)
			s := newServer(t)
			if backend == "postgres" {
				s.DB = fmt.Sprintf("postgres %q", pgtest.DSN(t))
			}
			s.Start(s.browserSite("admins boss"))

			// The population: N guests, M of them sign up, K are deleted
			// (through the admin API).
			const n, m, k = 6, 2, 1
			var ids []string
			var visitors []*visitor
			for i := range n {
				v := newVisitor(t, s)
				id, _ := upstreamID(t, v.page("/"))
				ids, visitors = append(ids, id), append(visitors, v)
				if i < m {
					if r := v.post("/auth/signup", url.Values{"username": {fmt.Sprintf("member%d", i)}, "password": {"correct horse battery"}}); r.Status != http.StatusSeeOther {
						t.Fatalf("sign-up %d: %d %s", i, r.Status, r.Body)
					}
				}
			}
			for _, id := range ids[n-k:] {
				if r := s.admin("DELETE", "/guest_auth/users/"+id, nil); r.Status != http.StatusOK {
					t.Fatalf("delete %s: %d %s", id, r.Status, r.Body)
				}
			}
			// A member who is not an admin: the 404 page, as for a page
			// that does not exist.
			if r := visitors[0].page("/auth/admin/"); r.Status != http.StatusNotFound || !strings.Contains(string(r.Body), "There is no such page.") {
				t.Fatalf("a member opened the dashboard: %d", r.Status)
			}

			ctx := newChromium(t)
			// The admin: a guest in this browser, signed up as boss (one
			// more guest created and upgraded).
			run(t, ctx, chromedp.Navigate(s.Base+"/auth/admin/"), chromedp.WaitVisible("main", chromedp.ByQuery))
			if got := text(t, ctx, "main"); !strings.Contains(got, "There is no such page.") {
				t.Fatalf("a guest sees %q", got)
			}
			every(t, ctx, axe, "dashboard-404-"+backend)
			run(t, ctx, chromedp.Navigate(s.Base+"/auth/signup"), chromedp.WaitVisible("#username", chromedp.ByID),
				chromedp.SendKeys("#username", "boss", chromedp.ByID),
				chromedp.SendKeys("#password", "the boss's password", chromedp.ByID),
				chromedp.Click("button[type=submit]", chromedp.ByQuery))
			waitLocation(t, ctx, s.Base+"/")
			run(t, ctx, chromedp.Navigate(s.Base+"/auth/admin/"), chromedp.WaitVisible("#now-guests", chromedp.ByID))
			for sel, want := range map[string]string{
				"#now-guests":   fmt.Sprint(n - m - k),
				"#now-members":  fmt.Sprint(m + 1),
				"#win-created":  fmt.Sprint(n + 1),
				"#win-upgraded": fmt.Sprint(m + 1),
				"#win-deleted":  fmt.Sprint(k),
			} {
				if got := text(t, ctx, sel); got != want {
					t.Errorf("%s shows %q, want %q", sel, got, want)
				}
			}
			if c := countOf(t, ctx, "svg.chart"); c != 6 {
				t.Fatalf("%d charts, want 6", c)
			}
			if c := countOf(t, ctx, "svg.chart rect.bar"); c == 0 {
				t.Fatal("no bars drawn")
			}
			every(t, ctx, axe, "dashboard-"+backend)

			// Search, by name, and the user page.
			run(t, ctx, chromedp.SendKeys("#q", "MEMBER1", chromedp.ByID), chromedp.Submit("#q", chromedp.ByID), chromedp.WaitVisible("#results", chromedp.ByID))
			every(t, ctx, axe, "dashboard-search-"+backend)
			run(t, ctx, chromedp.Click("#results a", chromedp.ByQuery), chromedp.WaitVisible("#user-id", chromedp.ByID))
			if got := text(t, ctx, "#user-id"); got != ids[1] {
				t.Fatalf("user page of %q, want %q", got, ids[1])
			}
			every(t, ctx, axe, "dashboard-user-"+backend)
			// A member with a password never expires: nothing to keep.
			if c := countOf(t, ctx, "#keep"); c != 0 {
				t.Fatal("Keep offered for a member with a password")
			}
			// A guest: keep, then stop keeping; then the member: end the
			// sessions, then delete after confirming.
			run(t, ctx, chromedp.Navigate(s.Base+"/auth/admin/user?id="+ids[2]), chromedp.WaitVisible("#keep", chromedp.ByID))
			run(t, ctx, chromedp.Click("#keep", chromedp.ByID), chromedp.WaitVisible("#unkeep", chromedp.ByID))
			if got := text(t, ctx, "#user-kept"); !strings.HasPrefix(got, "yes") {
				t.Fatalf("kept shows %q", got)
			}
			run(t, ctx, chromedp.Click("#unkeep", chromedp.ByID), chromedp.WaitVisible("#keep", chromedp.ByID))
			run(t, ctx, chromedp.Navigate(s.Base+"/auth/admin/user?id="+ids[1]), chromedp.WaitVisible("#revoke", chromedp.ByID))
			// The page before already has a message (unkept): wait for the
			// revocation's.
			run(t, ctx, chromedp.Click("#revoke", chromedp.ByID))
			waitLocation(t, ctx, s.Base+"/auth/admin/user?id="+ids[1]+"&done=revoked&n=1")
			run(t, ctx, chromedp.WaitVisible(".message", chromedp.ByQuery))
			if got := text(t, ctx, ".message"); !strings.Contains(got, "ended (1)") {
				t.Fatalf("revoke says %q", got)
			}
			if r := visitors[1].page("/auth/account"); r.Status != http.StatusSeeOther {
				t.Fatalf("the member's session survived: %d", r.Status)
			}
			run(t, ctx, chromedp.Click("#delete", chromedp.ByID), chromedp.WaitVisible("#confirm-delete", chromedp.ByID))
			every(t, ctx, axe, "dashboard-delete-"+backend)
			run(t, ctx, chromedp.Click("#confirm-delete", chromedp.ByID), chromedp.WaitVisible("#results", chromedp.ByID))
			if got := text(t, ctx, "#results"); !strings.Contains(got, "No user") {
				t.Fatalf("after the deletion: %q", got)
			}
			run(t, ctx, chromedp.Navigate(s.Base+"/auth/admin/"), chromedp.WaitVisible("#win-deleted", chromedp.ByID))
			if got := text(t, ctx, "#win-deleted"); got != fmt.Sprint(k+1) {
				t.Fatalf("deleted shows %q after the admin's deletion", got)
			}

			// A cross-site form against the dashboard is refused, with the
			// admin's own cookie.
			cookies := sessionCookies(t, ctx)
			req, _ := http.NewRequest(http.MethodPost, s.Base+"/auth/admin/user", strings.NewReader(url.Values{"id": {ids[0]}, "action": {"delete"}, "confirm": {"yes"}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", "https://evil.example")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			req.AddCookie(&http.Cookie{Name: cookies[0].Name, Value: cookies[0].Value})
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("cross-site delete: %d", resp.StatusCode)
			}
			if r := s.admin("GET", "/guest_auth/users/"+ids[0], nil); r.Status != http.StatusOK {
				t.Fatalf("the user is gone after a refused cross-site delete: %d", r.Status)
			}
			// The same numbers in the admin API.
			rep := s.adminOK("GET", "/guest_auth/dashboard", nil)
			if w := rep["windows"].([]any)[0].(map[string]any); w["guests_created"] != float64(n+1) || w["users_deleted"] != float64(k+1) {
				t.Fatalf("admin API window %v", w)
			}
		})
	}
}

// The dashboard over 90 days of history (the daily counters written into
// the store before Caddy opens it): every chart drawn, axe-clean in light
// and dark and at 375 px, kept as dashboard-history-*.png (the README's
// screenshot, docs/dashboard.png).
func TestChromiumDashboardHistory(t *testing.T) {
	needChromium(t)
	axe := axeSource(t)
	s := newServer(t)
	st, err := bolt.Open(s.DB, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var tl storage.Tally
	now := time.Now().UTC()
	for d := range 90 {
		day := now.AddDate(0, 0, -d)
		wave := float64(d%7) / 7
		created := int64(120 + 40*wave + float64(90-d))
		tl.Add(day, storage.SeriesGuestsCreated, created)
		tl.Add(day, storage.SeriesCohortUpgraded, created*int64(12+d%5)/100)
		for method, share := range map[string]int64{"password": 6, "passkey": 3, "email": 2, "provider": 1} {
			tl.Add(day, storage.SeriesUpgraded+method, created*share/100+int64(d%3))
		}
		tl.Add(day, storage.SeriesTimeToUpgrade+fmt.Sprint(14+d%6), 10)
		tl.Add(day, storage.SeriesMerged, int64(3+d%4))
		tl.Add(day, storage.SeriesExpired, int64(20+d%9))
		tl.Add(day, storage.SeriesDeleted, int64(d%3))
		tl.Add(day, storage.SeriesLimitHit+"ip", int64((d*7)%11))
		tl.Add(day, storage.SeriesLimitHit+"signin", int64((d*5)%4))
	}
	if err := st.AddDaily(context.Background(), tl.Counts()); err != nil {
		t.Fatal(err)
	}
	// And a population to match (the "Now" figures): guests made over the
	// last 30 days, a third of them members, some kept, one session each.
	if err := populate(context.Background(), st, 1500, now); err != nil {
		t.Fatal(err)
	}
	st.Close()
	s.Start(s.browserSite("admins boss\n\t\t\t\tsite_name \"Acme Notes\""))
	ctx := newChromium(t)
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signup"), chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.SendKeys("#username", "boss", chromedp.ByID),
		chromedp.SendKeys("#password", "the boss's password", chromedp.ByID),
		chromedp.Click("button[type=submit]", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")
	for _, days := range []string{"30", "90"} {
		run(t, ctx, chromedp.Navigate(s.Base+"/auth/admin/?days="+days), chromedp.WaitVisible("#win-created", chromedp.ByID))
		if c := countOf(t, ctx, "svg.chart rect.bar"); c < 100 {
			t.Fatalf("%s days: %d bars", days, c)
		}
		if c := countOf(t, ctx, "svg.chart polyline"); c != 2 {
			t.Fatalf("%s days: %d lines, want conversion and median", days, c)
		}
		every(t, ctx, axe, "dashboard-history-"+days)
	}
}

// populate writes n users through the store's own CreateUser, each with
// one live session, created and last active at spread times over the 30
// days before now: every third a member, every tenth guest kept.
func populate(ctx context.Context, st storage.Backend, n int, now time.Time) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := uuid.Must(uuid.NewV7()).String()
			created := now.Add(-time.Duration(i*(30*24*60)/n) * time.Minute)
			u := &model.User{ID: id, Name: model.GuestNamePrefix + id, Tag: model.TagGuest, CreatedAt: created, UpdatedAt: created, Kept: i%10 == 1}
			if i%3 == 0 {
				u.Tag, u.Name, u.PasswordHash, u.Kept = model.TagNormal, fmt.Sprintf("member%d", i), "$argon2id$screenshot", false
			}
			sess := &model.Session{ID: uuid.Must(uuid.NewV7()).String(), UserID: id, ClientID: "demo-app", AuthTime: created, CreatedAt: created,
				LastUsedAt: created, ExpiresAt: now.Add(24 * time.Hour), IdleExpiresAt: now.Add(24 * time.Hour), RefreshKey: []byte("k"), Generation: 1}
			if err := st.CreateUser(ctx, u, sess, nil, nil); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

package e2e

// Browser sessions (the `browser` block) over a real Caddy: the session
// cookie, lazy guests, the built-in pages, CSRF and merge on sign-in. The
// real-Chromium journeys are in browser_chromium_test.go.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// browserSite renders a Caddyfile where HTML page loads create guests,
// /members/* requires a registered user (a handle of its own), and the
// pages are at /auth/. extra goes inside both browser blocks.
func (s *server) browserSite(extra string, outer ...string) string {
	block := func(require string) string {
		return fmt.Sprintf(`guest_auth {
			storage %s
			issuer %s
			client demo-app demo-secret
			%s
			require %s
			%s
			browser {
				create_guest @page
				%s
			}
		}
		reverse_proxy %s`, s.DB, s.Base, testLimits(strings.Join(outer, "\n")), require, strings.Join(outer, "\n"), extra, strings.TrimPrefix(s.Upstream.URL, "http://"))
	}
	return fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	@page header Accept *text/html*
	handle /members/* {
		%s
	}
	handle {
		%s
	}
}
`, s.Admin, s.Port, block("user"), block("none"))
}

func startBrowserSite(t *testing.T, extra string, outer ...string) *server {
	s := newServer(t)
	s.Start(s.browserSite(extra, outer...))
	return s
}

// visitor is a browser-like client: a cookie jar, no redirect following.
type visitor struct {
	t   *testing.T
	s   *server
	c   *http.Client
	jar *cookiejar.Jar
}

func newVisitor(t *testing.T, s *server) *visitor {
	jar, _ := cookiejar.New(nil)
	return &visitor{t: t, s: s, jar: jar, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       20 * time.Second,
	}}
}

func (v *visitor) send(req *http.Request) *response {
	v.t.Helper()
	resp, err := v.c.Do(req)
	if err != nil {
		v.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// page loads path as a browser navigation.
func (v *visitor) page(path string, headers ...string) *response {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, v.s.Base+path, nil)
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return v.send(req)
}

// fetch is a script's fetch() of an API path (JSON accepted).
func (v *visitor) fetch(path string) *response {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, v.s.Base+path, nil)
	req.Header.Set("Accept", "application/json")
	return v.send(req)
}

// post submits a form the way a same-origin page does.
func (v *visitor) post(path string, form url.Values, headers ...string) *response {
	v.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, v.s.Base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", v.s.Base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return v.send(req)
}

func (v *visitor) session() *http.Cookie {
	u, _ := url.Parse(v.s.Base)
	for _, c := range v.jar.Cookies(u) {
		if c.Name == "guestauth_session" {
			return c
		}
	}
	return nil
}

func sessionSetCookie(t *testing.T, r *response) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: r.Header}).Cookies() {
		if c.Name == "guestauth_session" {
			return c
		}
	}
	return nil
}

func upstreamID(t *testing.T, r *response) (id, tag string) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("want the upstream's answer, got %d %s", r.Status, r.Body)
	}
	h := seen(t, r)
	return h.Get("X-Auth-User-Id"), h.Get("X-Auth-User-Tag")
}

func TestBrowserFirstVisitCreatesGuest(t *testing.T) {
	t.Parallel()
	s := startBrowserSite(t, "")
	v := newVisitor(t, s)
	first := v.page("/")
	id, tag := upstreamID(t, first)
	if id == "" || tag != "guest-user" {
		t.Fatalf("first page load: upstream identity %q %q", id, tag)
	}
	c := sessionSetCookie(t, first)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" || c.MaxAge <= 0 || c.MaxAge > 3600 {
		t.Fatalf("session cookie %+v (raw %q)", c, first.Header.Values("Set-Cookie"))
	}
	if strings.Count(c.Value, ".") != 2 || strings.HasPrefix(c.Value, "eyJ") {
		t.Fatalf("cookie value is not an opaque handle: %q", c.Value)
	}
	// Reload keeps the id, and the first return confirms the guest: the
	// cookie is re-sent with the full idle lifetime.
	again := v.page("/")
	if id2, _ := upstreamID(t, again); id2 != id {
		t.Fatalf("reload: id %q, want %q", id2, id)
	}
	if c2 := sessionSetCookie(t, again); c2 == nil || c2.MaxAge <= 3600 {
		t.Fatalf("confirmation did not extend the cookie: %+v", c2)
	}
	// Then no Set-Cookie on every request.
	if c3 := sessionSetCookie(t, v.page("/")); c3 != nil {
		t.Fatalf("cookie re-sent on every request: %+v", c3)
	}
	// The session cookie never reaches the upstream; others do.
	req, _ := http.NewRequest(http.MethodGet, s.Base+"/x", nil)
	req.Header.Set("Cookie", "a=1; guestauth_session="+v.session().Value+"; b=2")
	r := s.exchange(req)
	if got := seen(t, r).Values("Cookie"); len(got) != 1 || got[0] != "a=1; b=2" {
		t.Fatalf("upstream Cookie %q", got)
	}
	if idx, _ := upstreamID(t, r); idx != id {
		t.Fatalf("cookie request identity %q", idx)
	}

	// API clients (no text/html) get no guest and no cookie.
	api := s.get("/api/data", "")
	if h := seen(t, api); h.Get("X-Auth-User-Id") != "" || sessionSetCookie(t, api) != nil {
		t.Fatalf("API request got a guest: %v %v", h, api.Header)
	}
}

func TestBrowserParallelRequestsKeepOneSession(t *testing.T) {
	t.Parallel()
	s := startBrowserSite(t, "")
	v := newVisitor(t, s)
	id, _ := upstreamID(t, v.page("/"))
	var wg sync.WaitGroup
	ids := make(chan string, 30)
	for range 30 {
		wg.Go(func() {
			r := v.fetch("/api/x")
			if r.Status == http.StatusOK {
				ids <- seen(t, r).Get("X-Auth-User-Id")
			} else {
				ids <- fmt.Sprint(r.Status)
			}
		})
	}
	wg.Wait()
	close(ids)
	for got := range ids {
		if got != id {
			t.Fatalf("a parallel request saw %q, want %q", got, id)
		}
	}
	if got, _ := upstreamID(t, v.page("/")); got != id {
		t.Fatalf("after parallel requests: %q, want %q", got, id)
	}
}

func TestBrowserGarbageCookie(t *testing.T) {
	t.Parallel()
	s := startBrowserSite(t, "")
	v := newVisitor(t, s)
	for _, path := range []string{"/", "/auth/account", "/auth/signin"} {
		req, _ := http.NewRequest(http.MethodGet, s.Base+path, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Cookie", "guestauth_session=garbage.x.y; other=1")
		r := v.send(req)
		if r.Status == http.StatusUnauthorized || strings.Contains(r.Header.Get("Content-Type"), "json") && r.Status != 200 {
			t.Fatalf("%s with a garbage cookie: %d %s", path, r.Status, r.Body)
		}
		// Cleared, or (a page load that creates a guest) replaced by the
		// new guest's: one Set-Cookie of the session cookie either way.
		var set []string
		for _, sc := range r.Header.Values("Set-Cookie") {
			if strings.HasPrefix(sc, "guestauth_session=") {
				set = append(set, sc)
			}
		}
		cleared := len(set) == 1 && strings.HasPrefix(set[0], "guestauth_session=;") && strings.Contains(set[0], "Max-Age=0")
		replaced := len(set) == 1 && path == "/" && !strings.HasPrefix(set[0], "guestauth_session=garbage")
		if !cleared && !replaced {
			t.Fatalf("%s: garbage cookie neither cleared nor replaced once: %q", path, r.Header.Values("Set-Cookie"))
		}
	}
	// The page load went on as no session, so it got a new guest.
	if id, _ := upstreamID(t, v.page("/")); id == "" {
		t.Fatal("no guest after a garbage cookie")
	}
}

func TestBrowserSignUpSignOutSignIn(t *testing.T) {
	t.Parallel()
	s := startBrowserSite(t, "")
	v := newVisitor(t, s)
	guest, _ := upstreamID(t, v.page("/"))

	// /members/ needs a registered user: a guest is sent to sign-up.
	r := v.page("/members/area?x=1")
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/signup?return_to=%2Fmembers%2Farea%3Fx%3D1" {
		t.Fatalf("members as guest: %d %q", r.Status, r.Header.Get("Location"))
	}
	// API requests keep RFC 6750 answers.
	if r := v.fetch("/members/area"); r.Status != http.StatusForbidden || !strings.Contains(r.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("members API as guest: %d %q", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	page := v.page("/auth/signup?return_to=/members/area")
	if page.Status != http.StatusOK || !strings.Contains(string(page.Body), `autocomplete="new-password"`) ||
		!strings.Contains(page.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("signup page: %d %v %s", page.Status, page.Header, page.Body)
	}

	// Errors show in the page, the name refilled, never the password.
	bad := v.post("/auth/signup", url.Values{"username": {"guest_me"}, "password": {"long enough pw"}, "return_to": {"/members/area"}})
	if bad.Status != http.StatusBadRequest || !strings.Contains(string(bad.Body), `value="guest_me"`) || strings.Contains(string(bad.Body), "long enough pw") ||
		!strings.HasPrefix(bad.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("refused signup: %d %s", bad.Status, bad.Body)
	}
	ok := v.post("/auth/signup", url.Values{"username": {"alice"}, "password": {"correct horse"}, "return_to": {"/members/area"}})
	if ok.Status != http.StatusSeeOther || ok.Header.Get("Location") != "/members/area" {
		t.Fatalf("signup: %d %q %s", ok.Status, ok.Header.Get("Location"), ok.Body)
	}
	id, tag := upstreamID(t, v.page("/members/area"))
	if id != guest || tag != "normal-user" {
		t.Fatalf("after signup: %q %q, want %q normal-user", id, tag, guest)
	}
	taken := newVisitor(t, s).post("/auth/signup", url.Values{"username": {"Alice"}, "password": {"correct horse"}})
	if taken.Status != http.StatusConflict {
		t.Fatalf("taken name: %d", taken.Status)
	}

	// Sign-out: GET shows a form, POST ends the session.
	if r := v.page("/auth/signout"); r.Status != 200 || !strings.Contains(string(r.Body), `method="post"`) {
		t.Fatalf("signout page: %d %s", r.Status, r.Body)
	}
	old := v.session().Value
	if r := v.post("/auth/signout", url.Values{}); r.Status != http.StatusSeeOther {
		t.Fatalf("signout: %d", r.Status)
	}
	req, _ := http.NewRequest(http.MethodGet, s.Base+"/api", nil)
	req.Header.Set("Cookie", "guestauth_session="+old)
	if h := seen(t, s.exchange(req)); h.Get("X-Auth-User-Id") != "" {
		t.Fatal("the signed-out cookie still works")
	}
	next, _ := upstreamID(t, v.page("/"))
	if next == "" || next == guest {
		t.Fatalf("after signout: %q", next)
	}
	// Merge: a guest signs in to alice; the header comes once.
	in := v.post("/auth/signin", url.Values{"username": {"alice"}, "password": {"correct horse"}, "return_to": {"/welcome"}})
	if in.Status != http.StatusSeeOther || in.Header.Get("Location") != "/welcome" {
		t.Fatalf("signin: %d %s", in.Status, in.Body)
	}
	r1 := v.page("/welcome")
	if id, _ := upstreamID(t, r1); id != guest || seen(t, r1).Get("X-Auth-Merged-From") != next {
		t.Fatalf("first request after merge: %v", seen(t, r1))
	}
	if h := seen(t, v.page("/welcome")); h.Get("X-Auth-Merged-From") != "" {
		t.Fatalf("merged header sent twice: %v", h)
	}
	if !s.HasLog(`"guest.merged"`) || strings.Count(s.Logs(), `"guest.merged"`) != 1 {
		t.Fatalf("guest.merged event not logged once:\n%s", s.Logs())
	}
	// A wrong password shows the form again with 400.
	if r := newVisitor(t, s).post("/auth/signin", url.Values{"username": {"alice"}, "password": {"nope nope"}}); r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), `value="alice"`) {
		t.Fatalf("bad signin: %d %s", r.Status, r.Body)
	}
}

func TestBrowserCrossOriginAndReturnTo(t *testing.T) {
	t.Parallel()
	s := startBrowserSite(t, "")
	v := newVisitor(t, s)
	guest, _ := upstreamID(t, v.page("/"))
	for _, hdrs := range [][]string{
		{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"},
		{"Sec-Fetch-Site", "same-site", "Origin", "http://127.0.0.1:1"},
	} {
		r := v.post("/auth/signup", url.Values{"username": {"mallory"}, "password": {"correct horse"}}, hdrs...)
		if r.Status != http.StatusForbidden {
			t.Fatalf("cross-origin signup %v: %d", hdrs, r.Status)
		}
		r = v.post("/auth/signout", url.Values{}, hdrs...)
		if r.Status != http.StatusForbidden {
			t.Fatalf("cross-origin signout %v: %d", hdrs, r.Status)
		}
		hits := s.Upstream.Hits()
		r = v.post("/app/action", url.Values{}, hdrs...)
		if r.Status != http.StatusForbidden || s.Upstream.Hits() != hits {
			t.Fatalf("cross-origin POST to the app with the cookie %v: %d", hdrs, r.Status)
		}
	}
	if id, tag := upstreamID(t, v.page("/")); id != guest || tag != "guest-user" {
		t.Fatalf("refused requests changed the session: %q %q", id, tag)
	}
	for _, bad := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "http:/x", "/%0d%0aSet-Cookie:x"} {
		w := newVisitor(t, s)
		r := w.post("/auth/guest", url.Values{"return_to": {bad}})
		if r.Status != http.StatusSeeOther || (r.Header.Get("Location") != "/" && bad != "/%0d%0aSet-Cookie:x") {
			t.Fatalf("return_to %q: %d %q", bad, r.Status, r.Header.Get("Location"))
		}
	}
}

// A refused guest creation lets the request go on without identity, or
// shows a 429 page when the route requires one; API requests without a
// session keep RFC 6750 answers.
func TestBrowserGuestCreationRefused(t *testing.T) {
	t.Parallel()
	s := startBrowserSite(t, "", "guest_limit ip 1 1h")
	if id, _ := upstreamID(t, newVisitor(t, s).page("/")); id == "" {
		t.Fatal("first guest not created")
	}
	// The handlers of one site (same store and issuer; here also the
	// /members/ one) share its limits, so the budget is spent for both.
	v := newVisitor(t, s)
	r := v.page("/")
	if id, _ := upstreamID(t, r); id != "" || v.session() != nil {
		t.Fatalf("refused creation: identity %q, cookie %v", id, v.session())
	}
	r = v.page("/members/x")
	if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("members with a refused creation: %d %v", r.Status, r.Header)
	}
	r = v.fetch("/members/x")
	if r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("members API without a session: %d %v", r.Status, r.Header)
	}
	// The continue-as-guest form shows the 429 in the page.
	r = v.post("/auth/guest", url.Values{})
	if r.Status != http.StatusTooManyRequests || !strings.Contains(string(r.Body), "Too many") {
		t.Fatalf("guest page refused: %d %s", r.Status, r.Body)
	}
}

// Without create_guest nothing creates guests but the guest page; a
// navigation needing a session is sent to sign in.
func TestBrowserNoAutomaticGuests(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	cfg := strings.ReplaceAll(s.browserSite(""), "create_guest @page", "")
	s.Start(cfg)
	v := newVisitor(t, s)
	if id, _ := upstreamID(t, v.page("/")); id != "" || v.session() != nil {
		t.Fatalf("a guest without create_guest: %q", id)
	}
	r := v.page("/members/x")
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/signin?return_to=%2Fmembers%2Fx" {
		t.Fatalf("members without a session: %d %q", r.Status, r.Header.Get("Location"))
	}
	r = v.post("/auth/guest", url.Values{"return_to": {"/members/x"}})
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/members/x" || v.session() == nil {
		t.Fatalf("continue as guest: %d %q", r.Status, r.Header.Get("Location"))
	}
	if id, tag := upstreamID(t, v.page("/")); id == "" || tag != "guest-user" {
		t.Fatalf("after continue as guest: %q %q", id, tag)
	}
}

// The account page changes the username and the password with update-user's
// rules: the current password is needed once there is one.
func TestBrowserAccountPage(t *testing.T) {
	t.Parallel()
	s := startBrowserSite(t, "")
	v := newVisitor(t, s)
	if r := v.page("/auth/account"); r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/signin?return_to=%2Fauth%2Faccount" {
		t.Fatalf("account without a session: %d %q", r.Status, r.Header.Get("Location"))
	}
	id, _ := upstreamID(t, v.page("/"))
	if r := v.page("/auth/account"); r.Status != 200 || !strings.Contains(string(r.Body), id) || !strings.Contains(string(r.Body), "Guest") {
		t.Fatalf("guest account page: %d %s", r.Status, r.Body)
	}
	if r := v.post("/auth/signup", url.Values{"username": {"bob"}, "password": {"correct horse"}}); r.Status != http.StatusSeeOther {
		t.Fatalf("signup: %d %s", r.Status, r.Body)
	}
	for _, c := range []struct {
		form   url.Values
		status int
	}{
		{url.Values{"action": {"username"}, "username": {"bobby"}}, http.StatusBadRequest},
		{url.Values{"action": {"username"}, "username": {"bobby"}, "current_password": {"wrong horse"}}, http.StatusBadRequest},
		{url.Values{"action": {"password"}, "password": {"new horse battery"}}, http.StatusBadRequest},
		{url.Values{"action": {"other"}}, http.StatusBadRequest},
	} {
		r := v.post("/auth/account", c.form)
		body := string(r.Body)
		if r.Status != c.status || !strings.Contains(body, `class="error"`) || strings.Contains(body, "wrong horse") || strings.Contains(body, "new horse battery") {
			t.Fatalf("account %v: %d %s", c.form, r.Status, r.Body)
		}
	}
	if r := v.post("/auth/account", url.Values{"action": {"username"}, "username": {"bobby"}, "current_password": {"correct horse"}}); r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/auth/account" {
		t.Fatalf("rename: %d %s", r.Status, r.Body)
	}
	if r := v.post("/auth/account", url.Values{"action": {"password"}, "password": {"new horse battery"}, "current_password": {"correct horse"}}); r.Status != http.StatusSeeOther {
		t.Fatalf("password change: %d %s", r.Status, r.Body)
	}
	// This browser's session survives its own password change.
	if h := seen(t, v.page("/")); h.Get("X-Auth-User-Id") != id || h.Get("X-Auth-User-Name") != "bobby" {
		t.Fatalf("after the changes: %v", h)
	}
	w := newVisitor(t, s)
	if r := w.post("/auth/signin", url.Values{"username": {"bobby"}, "password": {"new horse battery"}}); r.Status != http.StatusSeeOther {
		t.Fatalf("sign-in with the new password: %d %s", r.Status, r.Body)
	}
}

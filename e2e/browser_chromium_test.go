package e2e

// Browser journeys in a real Chromium (Debian's chromium package, driven by
// chromedp), with axe-core (npm, testdata/browser) injected into each
// built-in page. They skip only when /usr/bin/chromium is absent and CI is
// unset. Set GUESTAUTH_SCREENSHOTS to a directory to keep a PNG of each
// page.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

const chromiumPath = "/usr/bin/chromium"

func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: %s is required (.ci/run installs Debian's chromium): %v", chromiumPath, err)
		}
		t.Skipf("%s not installed", chromiumPath)
	}
}

func axeSource(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "browser", "node_modules", "axe-core", "axe.min.js"))
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: axe-core is required (npm ci in testdata/browser): %v", err)
		}
		t.Skipf("axe-core not installed (npm ci --prefix e2e/testdata/browser): %v", err)
	}
	return string(b)
}

func newChromium(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1000, 900),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	ctx, cancel3 := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel3)
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

func run(t *testing.T, ctx context.Context, actions ...chromedp.Action) {
	t.Helper()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// echoed reads the identity the upstream echoed into the current page.
func echoed(t *testing.T, ctx context.Context) http.Header {
	t.Helper()
	var text string
	run(t, ctx, chromedp.Text("body", &text, chromedp.ByQuery))
	var h http.Header
	if err := json.Unmarshal([]byte(text), &h); err != nil {
		t.Fatalf("page is not the upstream echo: %v: %s", err, text)
	}
	return h
}

func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	var loc string
	run(t, ctx, chromedp.Location(&loc))
	return loc
}

// checkPage screenshots the current page and runs axe-core on it: no
// serious or critical violation.
func checkPage(t *testing.T, ctx context.Context, axe, name string) {
	t.Helper()
	var png []byte
	run(t, ctx, chromedp.FullScreenshot(&png, 100))
	dir := os.Getenv("GUESTAUTH_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	var found []string
	run(t, ctx,
		chromedp.Evaluate(axe, nil),
		chromedp.Evaluate(`axe.run(document).then(r => r.violations
			.filter(v => v.impact === 'serious' || v.impact === 'critical')
			.map(v => v.impact + ' ' + v.id + ': ' + v.help + ' @ ' + v.nodes.map(n => n.target.join(' ')).join(', ')))`,
			&found, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
	)
	if len(found) > 0 {
		t.Errorf("axe on %s:\n%s", name, strings.Join(found, "\n"))
	}
}

func sessionCookies(t *testing.T, ctx context.Context) []*network.Cookie {
	t.Helper()
	var out []*network.Cookie
	run(t, ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		cs, err := network.GetCookies().Do(ctx)
		for _, c := range cs {
			if c.Name == "guestauth_session" {
				out = append(out, c)
			}
		}
		return err
	}))
	return out
}

func TestChromiumJourney(t *testing.T) {
	needChromium(t)
	axe := axeSource(t)
	s := startBrowserSite(t, "")
	ctx := newChromium(t)

	// First visit: a guest, its cookie with the right attributes.
	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	guest := echoed(t, ctx).Get("X-Auth-User-Id")
	if guest == "" || echoed(t, ctx).Get("X-Auth-User-Tag") != "guest-user" {
		t.Fatalf("first visit: %v", echoed(t, ctx))
	}
	cs := sessionCookies(t, ctx)
	if len(cs) != 1 || !cs[0].HTTPOnly || cs[0].SameSite != network.CookieSameSiteLax || cs[0].Path != "/" ||
		cs[0].Domain != "127.0.0.1" || cs[0].Session || cs[0].Secure {
		t.Fatalf("session cookie: %+v", cs)
	}
	if got := echoed(t, ctx).Values("Cookie"); len(got) != 0 {
		t.Fatalf("the upstream got cookies %q", got)
	}
	// Reload keeps the id.
	run(t, ctx, chromedp.Reload())
	if id := echoed(t, ctx).Get("X-Auth-User-Id"); id != guest {
		t.Fatalf("reload: %q, want %q", id, guest)
	}
	// 30 parallel fetches keep one session; scripts cannot read the cookie.
	var ids []string
	var docCookie string
	run(t, ctx,
		chromedp.Evaluate(`Promise.all(Array.from({length: 30}, () =>
			fetch('/api/x', {headers: {Accept: 'application/json'}}).then(r => r.json()).then(h => (h['X-Auth-User-Id'] || ['none'])[0])))`,
			&ids, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }),
		chromedp.Evaluate(`document.cookie`, &docCookie),
	)
	for _, id := range ids {
		if id != guest {
			t.Fatalf("parallel fetches: %q", ids)
		}
	}
	if strings.Contains(docCookie, "guestauth_session") {
		t.Fatalf("document.cookie shows the session: %q", docCookie)
	}
	run(t, ctx, chromedp.Reload())
	if id := echoed(t, ctx).Get("X-Auth-User-Id"); id != guest {
		t.Fatalf("after parallel fetches: %q, want %q", id, guest)
	}

	// /members/ sends the guest to sign-up, and back after it.
	run(t, ctx, chromedp.Navigate(s.Base+"/members/area"), chromedp.WaitVisible("#username", chromedp.ByID))
	if loc := location(t, ctx); loc != s.Base+"/auth/signup?return_to=%2Fmembers%2Farea" {
		t.Fatalf("members as guest went to %q", loc)
	}
	checkPage(t, ctx, axe, "signup")
	// An error shows in the page, the name refilled.
	run(t, ctx,
		chromedp.SendKeys("#username", "guest_nope", chromedp.ByID),
		chromedp.SendKeys("#password", "correct horse", chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID),
		chromedp.WaitVisible("#form-error", chromedp.ByID),
	)
	var refilled string
	run(t, ctx, chromedp.Value("#username", &refilled, chromedp.ByID))
	if refilled != "guest_nope" {
		t.Fatalf("form not refilled: %q", refilled)
	}
	checkPage(t, ctx, axe, "signup-error")
	run(t, ctx,
		chromedp.SetValue("#username", "alice", chromedp.ByID),
		chromedp.SendKeys("#password", "correct horse", chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID),
		chromedp.WaitReady("body", chromedp.ByQuery),
	)
	waitLocation(t, ctx, s.Base+"/members/area")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guest || h.Get("X-Auth-User-Tag") != "normal-user" {
		t.Fatalf("after sign-up: %v", h)
	}

	// Account page.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/account"), chromedp.WaitVisible("#current_password", chromedp.ByID))
	checkPage(t, ctx, axe, "account")

	// Sign-out, then a new guest.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signout"), chromedp.WaitVisible("button", chromedp.ByQuery))
	checkPage(t, ctx, axe, "signout")
	run(t, ctx, chromedp.Click("button", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")
	guest2 := echoed(t, ctx).Get("X-Auth-User-Id")
	if guest2 == "" || guest2 == guest {
		t.Fatalf("after sign-out: %q", guest2)
	}

	// A cross-origin (same-site: another port) form POST is refused and
	// changes nothing.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!DOCTYPE html><form method="post" action="%s/auth/signout"></form><script>document.forms[0].submit()</script>`, s.Base)
	}))
	defer evil.Close()
	run(t, ctx, chromedp.Navigate(evil.URL))
	waitLocation(t, ctx, s.Base+"/auth/signout")
	var body string
	run(t, ctx, chromedp.Text("body", &body, chromedp.ByQuery))
	if !strings.Contains(body, "another site") {
		t.Fatalf("cross-origin sign-out not refused: %s", body)
	}
	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	if id := echoed(t, ctx).Get("X-Auth-User-Id"); id != guest2 {
		t.Fatalf("after the refused cross-origin POST: %q, want %q", id, guest2)
	}

	// Sign-in from the guest session: merged once, event once.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signin?return_to=/welcome"), chromedp.WaitVisible("#username", chromedp.ByID))
	checkPage(t, ctx, axe, "signin")
	run(t, ctx,
		chromedp.SendKeys("#username", "alice", chromedp.ByID),
		chromedp.SendKeys("#password", "correct horse", chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID),
	)
	waitLocation(t, ctx, s.Base+"/welcome")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guest || h.Get("X-Auth-Merged-From") != guest2 {
		t.Fatalf("first request after the merge: %v", h)
	}
	run(t, ctx, chromedp.Reload())
	if h := echoed(t, ctx); h.Get("X-Auth-Merged-From") != "" {
		t.Fatalf("merged header sent again: %v", h)
	}
	if !s.HasLog(`"guest.merged"`) || strings.Count(s.Logs(), `"guest.merged"`) != 1 {
		t.Fatal("guest.merged not logged exactly once")
	}

	// return_to to another origin lands on /.
	run(t, ctx, network.ClearBrowserCookies(),
		chromedp.Navigate(s.Base+"/auth/guest?return_to=https://example.com/"), chromedp.WaitVisible("button", chromedp.ByQuery))
	checkPage(t, ctx, axe, "guest")
	run(t, ctx, chromedp.Click("button", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")

	// A garbage cookie on a page: cleared, the page shown, never a 401.
	run(t, ctx,
		network.ClearBrowserCookies(),
		network.SetCookie("guestauth_session", "garbage").WithDomain("127.0.0.1").WithPath("/"),
		chromedp.Navigate(s.Base+"/auth/account"),
		chromedp.WaitVisible("#username", chromedp.ByID),
	)
	if loc := location(t, ctx); !strings.HasPrefix(loc, s.Base+"/auth/signin?") {
		t.Fatalf("account with a garbage cookie went to %q", loc)
	}
	if cs := sessionCookies(t, ctx); len(cs) != 0 {
		t.Fatalf("garbage cookie kept: %+v", cs)
	}
	// The error page too.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/nope"), chromedp.WaitVisible("main", chromedp.ByQuery))
	checkPage(t, ctx, axe, "error")
	if h := s.Upstream.Headers(); strings.Contains(strings.Join(h.Values("Cookie"), ";"), "guestauth_session") {
		t.Fatalf("the upstream saw the session cookie: %v", h)
	}
}

func waitLocation(t *testing.T, ctx context.Context, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		loc := location(t, ctx)
		if loc == want {
			run(t, ctx, chromedp.WaitReady("body", chromedp.ByQuery))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("location %q, want %q", loc, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

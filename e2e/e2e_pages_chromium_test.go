package e2e

// Journeys of issue 17's pages in a real Chromium: why sign-up is asked,
// every sign-up error at once, deleting an account (a guest and a member),
// the guest's sign-out warning, the demo upstream's page; every page
// axe-clean and usable 375 px wide. With GUESTAUTH_SCREENSHOTS set, each
// page is kept there as a PNG, light and dark (the stylesheet follows
// prefers-color-scheme) and narrow.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// shots keeps the current page as name-light.png and name-dark.png, and
// runs axe on it in both schemes.
func shots(t *testing.T, ctx context.Context, axe, name string) {
	t.Helper()
	for _, scheme := range []string{"light", "dark"} {
		run(t, ctx, emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}))
		checkPage(t, ctx, axe, name+"-"+scheme)
	}
	run(t, ctx, emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}))
}

// narrowReport is what a page looks like 375 px wide.
type narrowReport struct {
	Width       int      `json:"width"`
	ScrollWidth int      `json:"scrollWidth"`
	Outside     []string `json:"outside"` // controls not wholly within the viewport
	Small       []string `json:"small"`   // text fields too narrow, buttons too low to use
}

const narrowJS = `(() => {
	const w = document.documentElement.clientWidth;
	const desc = e => e.outerHTML.slice(0, 90);
	const shown = [...document.querySelectorAll('input, button, a, select, textarea')].filter(e => e.type !== 'hidden' && !e.hidden && e.getClientRects().length > 0);
	return {
		width: w,
		scrollWidth: document.documentElement.scrollWidth,
		outside: shown.filter(e => { const r = e.getBoundingClientRect(); return r.left < 0 || r.right > w + 0.5; }).map(desc),
		small: shown.filter(e => {
			const r = e.getBoundingClientRect();
			if (e.matches('input[type=text], input[type=password]')) return r.width < 250 || r.height < 40;
			if (e.matches('button, a.button')) return r.height < 40;
			if (e.matches('input[type=checkbox]')) return r.width < 20;
			return false;
		}).map(desc),
	};
})()`

// narrow checks the current page 375×800: no horizontal scroll, every
// control within the viewport and big enough to use; axe-clean; kept as
// name-375.png.
func narrow(t *testing.T, ctx context.Context, axe, name string) {
	t.Helper()
	run(t, ctx, emulation.SetDeviceMetricsOverride(375, 800, 1, true))
	defer run(t, ctx, emulation.ClearDeviceMetricsOverride())
	var rep narrowReport
	run(t, ctx, chromedp.Evaluate(narrowJS, &rep))
	if rep.Width != 375 || rep.ScrollWidth > rep.Width || len(rep.Outside) > 0 || len(rep.Small) > 0 {
		t.Errorf("%s at 375 px: %+v", name, rep)
	}
	checkPage(t, ctx, axe, name+"-375")
}

// every runs shots and narrow on the current page.
func every(t *testing.T, ctx context.Context, axe, name string) {
	t.Helper()
	shots(t, ctx, axe, name)
	narrow(t, ctx, axe, name)
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	var s string
	run(t, ctx, chromedp.Text(sel, &s, chromedp.ByQuery))
	return s
}

func attr(t *testing.T, ctx context.Context, sel, name string) string {
	t.Helper()
	var v string
	var ok bool
	run(t, ctx, chromedp.AttributeValue(sel, name, &v, &ok, chromedp.ByQuery))
	return v
}

// A guest sent from /members/ is told why; sign-up states its rules and
// shows a reserved name and a short password refused together, each at its
// field; the guest's sign-out page offers sign-up instead; a missing page
// shows the session.
func TestChromiumMembersAndSignUpErrors(t *testing.T) {
	needChromium(t)
	axe := axeSource(t)
	s := startBrowserSite(t, "site_name \"Acme <Shop>\"")
	ctx := newChromium(t)

	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	guest := echoed(t, ctx).Get("X-Auth-User-Id")
	short := "Guest " + strings.ReplaceAll(guest, "-", "")[24:]

	run(t, ctx, chromedp.Navigate(s.Base+"/members/area?tab=1"), chromedp.WaitVisible("#username", chromedp.ByID))
	if got := text(t, ctx, ".notice"); got != "Sign up or sign in to continue to /members/area." {
		t.Fatalf("notice %q", got)
	}
	var title string
	run(t, ctx, chromedp.Title(&title))
	if title != "Sign up · Acme <Shop>" || text(t, ctx, "header a.site") != "Acme <Shop>" || attr(t, ctx, "header a.site", "href") != "/" {
		t.Fatalf("site: title %q, header %q", title, text(t, ctx, "header a.site"))
	}
	if got := text(t, ctx, "#password-hint"); got != "8 to 128 characters." {
		t.Fatalf("password rules %q", got)
	}
	if got := text(t, ctx, "footer"); !strings.Contains(got, "Signed in as "+short+".") || strings.Contains(got, guest) {
		t.Fatalf("footer %q, want %q", got, short)
	}
	every(t, ctx, axe, "signup-members")

	// Both faults at once: the browser sends the form (novalidate), the
	// page answers with both.
	run(t, ctx,
		chromedp.SendKeys("#username", "admin", chromedp.ByID),
		chromedp.SendKeys("#password", "short", chromedp.ByID),
		chromedp.Click("button[type=submit]", chromedp.ByQuery),
		chromedp.WaitVisible("#password-error", chromedp.ByID),
	)
	if got := text(t, ctx, "#username-error"); got != `The username "admin" is reserved.` {
		t.Fatalf("username error %q", got)
	}
	if got := text(t, ctx, "#password-error"); got != "A password must be 8 to 128 characters." {
		t.Fatalf("password error %q", got)
	}
	for _, id := range []string{"username", "password"} {
		if attr(t, ctx, "#"+id, "aria-invalid") != "true" || attr(t, ctx, "#"+id, "aria-describedby") != id+"-hint "+id+"-error" {
			t.Fatalf("#%s not tied to its error", id)
		}
	}
	if got := text(t, ctx, "#form-error"); !strings.Contains(got, "reserved") || !strings.Contains(got, "8 to 128") {
		t.Fatalf("summary %q", got)
	}
	var refilled, pw string
	run(t, ctx, chromedp.Value("#username", &refilled, chromedp.ByID), chromedp.Value("#password", &pw, chromedp.ByID))
	if refilled != "admin" || pw != "" {
		t.Fatalf("refilled %q, password %q", refilled, pw)
	}
	if !strings.Contains(location(t, ctx), "/auth/signup") || text(t, ctx, ".notice") != "Sign up or sign in to continue to /members/area." {
		t.Fatalf("after the refusal: %s", location(t, ctx))
	}
	every(t, ctx, axe, "signup-errors")

	// The guest's sign-out page: a warning, and sign-up instead.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signout?return_to=/cart"), chromedp.WaitVisible(".warning", chromedp.ByQuery))
	every(t, ctx, axe, "signout-guest")
	run(t, ctx, chromedp.Click("a.button", chromedp.ByQuery), chromedp.WaitVisible("#username", chromedp.ByID))
	if loc := location(t, ctx); loc != s.Base+"/auth/signup?return_to=%2fcart" {
		t.Fatalf("sign up instead went to %q", loc)
	}

	// A page that does not exist, with the session shown.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/nope"), chromedp.WaitVisible("main", chromedp.ByQuery))
	if got := text(t, ctx, "footer"); !strings.Contains(got, "Signed in as "+short+".") {
		t.Fatalf("404 footer %q", got)
	}
	every(t, ctx, axe, "error-404")

	// Sign-in, sent from /members/ without a session.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signin?return_to=/members/"), chromedp.WaitVisible("#username", chromedp.ByID))
	if got := text(t, ctx, ".notice"); got != "Sign in or sign up to continue to /members/." {
		t.Fatalf("sign-in notice %q", got)
	}
	every(t, ctx, axe, "signin-members")

	// Then sign up for real, and land where the visitor was going.
	run(t, ctx, chromedp.Navigate(s.Base+"/members/area?tab=1"), chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.SendKeys("#username", "ivy", chromedp.ByID),
		chromedp.SendKeys("#password", "ivy's password", chromedp.ByID),
		chromedp.Click("button[type=submit]", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/members/area?tab=1")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guest || h.Get("X-Auth-User-Tag") != "normal-user" {
		t.Fatalf("after sign-up: %v", h)
	}
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signout"), chromedp.WaitVisible("button", chromedp.ByQuery))
	if n := countOf(t, ctx, ".warning"); n != 0 {
		t.Fatal("a member is warned on sign-out")
	}
	every(t, ctx, axe, "signout-member")
}

func countOf(t *testing.T, ctx context.Context, sel string) int {
	t.Helper()
	var n int
	run(t, ctx, chromedp.Evaluate(fmt.Sprintf(`document.querySelectorAll(%q).length`, sel), &n))
	return n
}

// Delete my account, as a guest (the confirmation box) and as a member
// (the password): the browser lands on the app as a new visitor, and the
// next page load is a guest of its own.
func TestChromiumDeleteAccount(t *testing.T) {
	needChromium(t)
	axe := axeSource(t)
	s := startBrowserSite(t, "home /")
	ctx := newChromium(t)

	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	guest := echoed(t, ctx).Get("X-Auth-User-Id")
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/account"), chromedp.WaitVisible("#delete_confirm", chromedp.ByID))
	if got := text(t, ctx, "dl"); !strings.Contains(got, guest) {
		t.Fatalf("the account page lacks the full id: %q", got)
	}
	every(t, ctx, axe, "account-guest")
	// Not confirmed: asked again, at the box.
	run(t, ctx, chromedp.Click("button.danger", chromedp.ByQuery), chromedp.WaitVisible("#delete_confirm-error", chromedp.ByID))
	if attr(t, ctx, "#delete_confirm", "aria-invalid") != "true" {
		t.Fatal("the box is not marked")
	}
	every(t, ctx, axe, "account-guest-unconfirmed")
	run(t, ctx, chromedp.Click("#delete_confirm", chromedp.ByID), chromedp.Click("button.danger", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")
	next := echoed(t, ctx).Get("X-Auth-User-Id")
	if next == "" || next == guest {
		t.Fatalf("after deleting the guest: %q (was %q)", next, guest)
	}
	if !s.HasLog(`"user.deleted"`) || !strings.Contains(s.Logs(), guest) {
		t.Fatal("user.deleted not reported")
	}
	if cs := sessionCookies(t, ctx); len(cs) != 1 {
		t.Fatalf("cookies after the next page load: %+v", cs)
	}

	// A member: the password.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signup"), chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.SendKeys("#username", "jade", chromedp.ByID),
		chromedp.SendKeys("#password", "jade's password", chromedp.ByID),
		chromedp.Click("button[type=submit]", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/account"), chromedp.WaitVisible("#delete_password", chromedp.ByID))
	every(t, ctx, axe, "account-member")
	run(t, ctx, chromedp.SendKeys("#delete_password", "not jade's", chromedp.ByID), chromedp.Click("button.danger", chromedp.ByQuery),
		chromedp.WaitVisible("#delete_password-error", chromedp.ByID))
	if got := text(t, ctx, "#delete_password-error"); got != "The password is incorrect." {
		t.Fatalf("wrong password: %q", got)
	}
	every(t, ctx, axe, "account-member-wrong-password")
	run(t, ctx, chromedp.SendKeys("#delete_password", "jade's password", chromedp.ByID), chromedp.Click("button.danger", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") == next || h.Get("X-Auth-User-Tag") != "guest-user" {
		t.Fatalf("after deleting the member: %v", h)
	}
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signin"), chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.SendKeys("#username", "jade", chromedp.ByID),
		chromedp.SendKeys("#password", "jade's password", chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID),
		chromedp.WaitVisible("#form-error", chromedp.ByID))
	if got := text(t, ctx, "#form-error"); got != "The username or password is incorrect." {
		t.Fatalf("the deleted member's sign-in: %q", got)
	}
}

// The demo (Caddyfile.example) in a browser: its app shows a page of who
// the visitor is, usable and axe-clean, with a way to each page.
func TestChromiumDemoPage(t *testing.T) {
	needChromium(t)
	axe := axeSource(t)
	s, _ := startExample(t)
	ctx := newChromium(t)
	run(t, ctx, chromedp.Navigate(s.Base+"/"), chromedp.WaitVisible("h1", chromedp.ByQuery))
	if got := text(t, ctx, "h1"); got != "Hello, guest" {
		t.Fatalf("demo h1 %q", got)
	}
	every(t, ctx, axe, "demo-guest")
	run(t, ctx, chromedp.Click(`a[href="/auth/signup"]`, chromedp.ByQuery), chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.SendKeys("#username", "kim", chromedp.ByID),
		chromedp.SendKeys("#password", "kim's password", chromedp.ByID),
		chromedp.Click("button[type=submit]", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")
	if got := text(t, ctx, "h1"); got != "Hello, kim" {
		t.Fatalf("demo h1 after sign-up %q", got)
	}
	every(t, ctx, axe, "demo-member")
	run(t, ctx, chromedp.Click(`a[href="/members/"]`, chromedp.ByQuery), chromedp.WaitVisible("h1", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/members/")
	if got := text(t, ctx, "h1"); got != "Hello, kim" {
		t.Fatalf("members %q", got)
	}
	// The docs' picture of the sign-up page.
	if dir := os.Getenv("GUESTAUTH_SCREENSHOTS"); dir != "" {
		run(t, ctx, chromedp.Navigate(s.Base+"/auth/signout"), chromedp.WaitVisible("button", chromedp.ByQuery), chromedp.Click("button", chromedp.ByQuery))
		waitLocation(t, ctx, s.Base+"/")
		run(t, ctx, chromedp.Navigate(s.Base+"/members/"), chromedp.WaitVisible("#username", chromedp.ByID))
		var png []byte
		run(t, ctx, emulation.SetDeviceMetricsOverride(800, 700, 1, false), chromedp.CaptureScreenshot(&png), emulation.ClearDeviceMetricsOverride())
		if err := os.WriteFile(filepath.Join(dir, "browser-signup.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

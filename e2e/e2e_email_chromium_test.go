package e2e

// The email journeys of issue 20 in a real Chromium, over a real Caddy
// sending to a real SMTP server: sign up with an address, confirm it,
// reset a forgotten password, sign in with the address; a guest comes back
// in a fresh browser with a sign-in link. Refusals show in the page.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

func pageText(t *testing.T, ctx context.Context) string {
	t.Helper()
	var body string
	run(t, ctx, chromedp.Text("main", &body, chromedp.ByQuery))
	return body
}

// waitText waits until the page's main text holds want (after a form
// that navigates: the old page may still be there, or be going), and
// returns it.
func waitText(t *testing.T, ctx context.Context, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var body string
	for time.Now().Before(deadline) {
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := chromedp.Run(tctx, chromedp.Text("main", &body, chromedp.ByQuery))
		cancel()
		if err == nil && strings.Contains(body, want) {
			return body
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the page does not say %q: %s", want, body)
	return ""
}

func TestChromiumEmailJourney(t *testing.T) {
	needChromium(t)
	axe := axeSource(t)
	t.Parallel()
	s, smtp := startEmailSite(t, false)
	ctx := newChromium(t)

	// Sign up with an address.
	run(t, ctx, chromedp.Navigate(s.Base+"/members/area"), chromedp.WaitVisible("#email", chromedp.ByID))
	checkPage(t, ctx, axe, "signup-email")
	run(t, ctx,
		chromedp.SendKeys("#username", "nadia", chromedp.ByID),
		chromedp.SendKeys("#password", "correct horse", chromedp.ByID),
		chromedp.SendKeys("#email", "Nadia@Example.test", chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID),
	)
	waitLocation(t, ctx, s.Base+"/members/area")
	user := echoed(t, ctx).Get("X-Auth-User-Id")
	if user == "" {
		t.Fatal("no user after sign-up")
	}
	// Open the verification link, confirm: verified on the account page.
	verify := mailLink(t, s, smtp, 1, "Nadia@example.test", "verify-email", 20*time.Second)
	run(t, ctx, chromedp.Navigate(s.Base+verify), chromedp.WaitVisible("button", chromedp.ByQuery))
	checkPage(t, ctx, axe, "verify-email")
	run(t, ctx, chromedp.Click("button", chromedp.ByQuery))
	waitText(t, ctx, "Nadia@example.test is confirmed")
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/account"), chromedp.WaitVisible("#email", chromedp.ByID))
	if body := pageText(t, ctx); !strings.Contains(body, "Nadia@example.test (verified)") {
		t.Fatalf("account: %s", body)
	}
	checkPage(t, ctx, axe, "account-email")
	// The used link again: refused in the page.
	run(t, ctx, chromedp.Navigate(s.Base+verify), chromedp.WaitVisible("button", chromedp.ByQuery),
		chromedp.Click("button", chromedp.ByQuery))
	waitText(t, ctx, "already used")

	// Sign out; forgot password: the same page for an unknown address.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signout"), chromedp.WaitVisible("button", chromedp.ByQuery), chromedp.Click("button", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")
	forgot := func(addr string) string {
		run(t, ctx, chromedp.Navigate(s.Base+"/auth/signin"), chromedp.WaitVisible("#username", chromedp.ByID),
			chromedp.Click(`a[href^="/auth/forgot-password"]`, chromedp.ByQuery), chromedp.WaitVisible("#email", chromedp.ByID),
			chromedp.SendKeys("#email", addr, chromedp.ByID), chromedp.Submit("#email", chromedp.ByID))
		return waitText(t, ctx, "a link is on its way")
	}
	unknown := forgot("nobody@example.test")
	checkPage(t, ctx, axe, "forgot-password")
	if known := forgot("nadia@example.test"); known != unknown {
		t.Fatalf("known and unknown addresses answered differently:\n%s\n%s", known, unknown)
	}
	reset := mailLink(t, s, smtp, 2, "Nadia@example.test", "reset-password", 20*time.Second)
	run(t, ctx, chromedp.Navigate(s.Base+reset), chromedp.WaitVisible("#password", chromedp.ByID))
	checkPage(t, ctx, axe, "reset-password")
	run(t, ctx, chromedp.SendKeys("#password", "battery staple", chromedp.ByID), chromedp.Submit("#password", chromedp.ByID))
	waitLocation(t, ctx, s.Base+"/")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != user {
		t.Fatalf("after the reset: %v", h)
	}
	// Sign out, sign in with the address and the new password.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signout"), chromedp.WaitVisible("button", chromedp.ByQuery), chromedp.Click("button", chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signin?return_to=/members/area"), chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.SendKeys("#username", "nadia@example.test", chromedp.ByID),
		chromedp.SendKeys("#password", "battery staple", chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID))
	waitLocation(t, ctx, s.Base+"/members/area")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != user || h.Get("X-Auth-User-Tag") != "normal-user" {
		t.Fatalf("sign in by address: %v", h)
	}
	// The reset link again: refused.
	run(t, ctx, chromedp.Navigate(s.Base+reset), chromedp.WaitVisible("main", chromedp.ByQuery))
	waitText(t, ctx, "already used")
}

// A guest adds and confirms an address, then in a fresh browser asks for a
// sign-in link and comes back as the same user.
func TestChromiumGuestComesBackByEmail(t *testing.T) {
	needChromium(t)
	axe := axeSource(t)
	t.Parallel()
	s, smtp := startEmailSite(t, false)
	ctx := newChromium(t)
	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	guest := echoed(t, ctx).Get("X-Auth-User-Id")
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/account"), chromedp.WaitVisible("#email", chromedp.ByID),
		chromedp.SendKeys("#email", "guest@example.test", chromedp.ByID), chromedp.Submit("#email", chromedp.ByID))
	waitText(t, ctx, "We mailed a confirmation link")
	verify := mailLink(t, s, smtp, 1, "guest@example.test", "verify-email", 20*time.Second)
	run(t, ctx, chromedp.Navigate(s.Base+verify), chromedp.WaitVisible("button", chromedp.ByQuery),
		chromedp.Click("button", chromedp.ByQuery))
	waitText(t, ctx, "is confirmed")

	fresh := newChromium(t)
	run(t, fresh, chromedp.Navigate(s.Base+"/auth/signin"), chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.Click(`a[href^="/auth/email-link"]`, chromedp.ByQuery), chromedp.WaitVisible("#email", chromedp.ByID))
	checkPage(t, fresh, axe, "email-link")
	run(t, fresh, chromedp.SendKeys("#email", "guest@example.test", chromedp.ByID), chromedp.Submit("#email", chromedp.ByID))
	waitText(t, fresh, "a link is on its way")
	link := mailLink(t, s, smtp, 2, "guest@example.test", "email-signin", 20*time.Second)
	run(t, fresh, chromedp.Navigate(s.Base+link), chromedp.WaitVisible("button", chromedp.ByQuery))
	checkPage(t, fresh, axe, "email-signin")
	run(t, fresh, chromedp.Click("button", chromedp.ByQuery))
	waitLocation(t, fresh, s.Base+"/")
	if h := echoed(t, fresh); h.Get("X-Auth-User-Id") != guest || h.Get("X-Auth-User-Tag") != "guest-user" {
		t.Fatalf("fresh browser: %v, want guest %s", h, guest)
	}

	// The address's budget (3 by default, one spent by the verification,
	// one by the link): the next two asks, the second refused in the page.
	for i, want := range []string{"a link is on its way", "Too many attempts"} {
		run(t, fresh, chromedp.Navigate(s.Base+"/auth/email-link"), chromedp.WaitVisible("#email", chromedp.ByID),
			chromedp.SendKeys("#email", "guest@example.test", chromedp.ByID), chromedp.Submit("#email", chromedp.ByID))
		t.Logf("ask %d", i)
		waitText(t, fresh, want)
	}
}

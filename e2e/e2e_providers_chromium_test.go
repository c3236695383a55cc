package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/guestauth/caddy-guestauth/internal/oidcrp/oidcrptest"
)

// startProviderSite is the browser site with one provider, zitadel's
// example OP (a real OpenID Provider, in this test process), whose client
// accepts the site's callback.
func startProviderSite(t *testing.T) *server {
	t.Helper()
	s := newServer(t)
	issuer := oidcrptest.Start(t, s.Base+"/auth/provider/testidp/callback")
	s.Start(s.browserSite(fmt.Sprintf(`provider testidp {
		issuer %s
		client_id %s
		client_secret %s
		label "Test IdP"
	}`, issuer, oidcrptest.ClientID, oidcrptest.ClientSecret)))
	return s
}

// continueWithTestIdP clicks "Continue with Test IdP" on page and signs in
// at the OP as user, then waits to be back at want.
func continueWithTestIdP(t *testing.T, ctx context.Context, s *server, page, user, want string) {
	t.Helper()
	run(t, ctx, chromedp.Navigate(s.Base+page),
		chromedp.WaitVisible(`a[href*="/auth/provider/testidp/start"]`, chromedp.ByQuery),
		chromedp.Click(`a[href*="/auth/provider/testidp/start"]`, chromedp.ByQuery),
		chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.SendKeys("#username", user, chromedp.ByID),
		chromedp.SendKeys("#password", oidcrptest.Password, chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID),
	)
	waitLocation(t, ctx, want)
}

// The journey in Chromium: a guest continues with the provider
// and is a member with the same id; signed out, the provider signs the
// same member in; a second guest (another browser) continuing with the
// same identity is merged into it, and the app is told once.
func TestChromiumProviderJourney(t *testing.T) {
	needChromium(t)
	axe := axeSource(t)
	s := startProviderSite(t)
	ctx := newChromium(t)

	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	guest := echoed(t, ctx)
	guestID := guest.Get("X-Auth-User-Id")
	if guestID == "" || guest.Get("X-Auth-User-Tag") != "guest-user" {
		t.Fatalf("not a guest: %v", guest)
	}
	// The buttons, looked at and checked by axe.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signup"), chromedp.WaitVisible(`a[href*="/provider/testidp/start"]`, chromedp.ByQuery))
	shots(t, ctx, axe, "provider-signup")
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signin"), chromedp.WaitVisible(`a[href*="/provider/testidp/start"]`, chromedp.ByQuery))
	shots(t, ctx, axe, "provider-signin")
	continueWithTestIdP(t, ctx, s, "/auth/signup?return_to=/", "alice", s.Base+"/")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guestID || h.Get("X-Auth-User-Tag") != "normal-user" || h.Get("X-Auth-User-Name") != "alice" {
		t.Fatalf("after Continue with: %v; want %s normal-user alice", h, guestID)
	}

	// Sign out, then the provider again: the same member.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signout"), chromedp.WaitVisible("button", chromedp.ByQuery),
		chromedp.Click(`form[action$="signout"] button`, chromedp.ByQuery))
	waitLocation(t, ctx, s.Base+"/")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") == guestID {
		t.Fatal("still signed in after signing out")
	}
	continueWithTestIdP(t, ctx, s, "/auth/signin?return_to=/", "alice", s.Base+"/")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guestID {
		t.Fatalf("signing in again: %v; want %s", h, guestID)
	}

	// A second guest in a fresh browser: merged into alice.
	ctx2 := newChromium(t)
	run(t, ctx2, chromedp.Navigate(s.Base+"/"))
	second := echoed(t, ctx2).Get("X-Auth-User-Id")
	if second == "" || second == guestID {
		t.Fatalf("second guest %q", second)
	}
	continueWithTestIdP(t, ctx2, s, "/auth/signin?return_to=/", "alice", s.Base+"/")
	h := echoed(t, ctx2)
	if h.Get("X-Auth-User-Id") != guestID || h.Get("X-Auth-Merged-From") != second {
		t.Fatalf("second guest after Continue with: %v; want %s merged from %s", h, guestID, second)
	}
	run(t, ctx2, chromedp.Navigate(s.Base+"/"))
	if h := echoed(t, ctx2); h.Get("X-Auth-Merged-From") != "" {
		t.Fatalf("the merge was told twice: %v", h)
	}

	// The account page lists the link; Remove of the only way in is refused.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/account"), chromedp.WaitReady(`input[value="unlink"]`, chromedp.ByQuery))
	if body := text(t, ctx, "main"); !strings.Contains(body, "Test IdP: linked") {
		t.Fatalf("account page: %s", body)
	}
	shots(t, ctx, axe, "provider-account")
	run(t, ctx, chromedp.Click(`form input[value="unlink"] ~ button`, chromedp.ByQuery))
	run(t, ctx, chromedp.WaitVisible(".error", chromedp.ByQuery))
	if body := text(t, ctx, "main"); !strings.Contains(body, "only way to sign in") {
		t.Fatalf("removing the only way in: %s", body)
	}
}

// Refusals in Chromium: a callback with a state nobody issued, and the
// real callback replayed after it signed the browser in, are error pages
// that sign nobody in and change nothing.
func TestChromiumProviderRefusals(t *testing.T) {
	needChromium(t)
	s := startProviderSite(t)
	ctx := newChromium(t)

	var mu sync.Mutex
	var callbacks []string
	chromedp.ListenTarget(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && strings.Contains(e.Request.URL, "/auth/provider/testidp/callback?") {
			mu.Lock()
			callbacks = append(callbacks, e.Request.URL)
			mu.Unlock()
		}
	})
	run(t, ctx, network.Enable())

	// Bad state.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/provider/testidp/callback?state="+strings.Repeat("A", 43)+"&code=x"),
		chromedp.WaitVisible(".error", chromedp.ByQuery))
	if body := text(t, ctx, "main"); !strings.Contains(body, "expired or was already used") {
		t.Fatalf("bad state: %s", body)
	}

	mu.Lock()
	callbacks = nil // the bad one above
	mu.Unlock()
	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	guestID := echoed(t, ctx).Get("X-Auth-User-Id")
	continueWithTestIdP(t, ctx, s, "/auth/signin?return_to=/", "bob", s.Base+"/")
	member := echoed(t, ctx)
	if member.Get("X-Auth-User-Id") != guestID || member.Get("X-Auth-User-Name") != "bob" {
		t.Fatalf("after Continue with: %v", member)
	}
	mu.Lock()
	if len(callbacks) != 1 {
		t.Fatalf("callbacks seen: %v", callbacks)
	}
	replay := callbacks[0]
	mu.Unlock()

	// Replayed: refused; the browser is still bob, in the same session.
	cookies := sessionCookies(t, ctx)
	run(t, ctx, chromedp.Navigate(replay), chromedp.WaitVisible(".error", chromedp.ByQuery))
	if body := text(t, ctx, "main"); !strings.Contains(body, "expired or was already used") {
		t.Fatalf("replayed callback: %s", body)
	}
	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guestID {
		t.Fatalf("after the replay: %v", h)
	}
	if after := sessionCookies(t, ctx); len(after) != 1 || len(cookies) != 1 || after[0].Value != cookies[0].Value {
		t.Fatalf("the replay changed the session cookie: %+v -> %+v", cookies, after)
	}
}

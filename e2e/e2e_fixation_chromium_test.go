package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// Session fixation, attempted in a real Chromium: the attacker gets a guest
// session of their own and plants its cookie in the victim's browser (as a
// sibling subdomain or a plain-HTTP response could). The victim browses as
// that guest, then signs up; from then on the attacker's cookie is no
// session at all, and the victim's account is theirs alone. The same after
// a password change: a handle seen before it is dead.
func TestChromiumFixationAttempt(t *testing.T) {
	needChromium(t)
	s := startBrowserSite(t, "")
	ctx := newChromium(t)

	attacker := newVisitor(t, s)
	planted, _ := upstreamID(t, attacker.page("/"))
	attacker.page("/") // confirmed, as a real browser's would be
	handle := attacker.session().Value

	// The planted cookie: the victim is the attacker's guest.
	run(t, ctx,
		network.SetCookie("guestauth_session", handle).WithDomain("127.0.0.1").WithPath("/").WithHTTPOnly(true),
		chromedp.Navigate(s.Base+"/"),
	)
	if id := echoed(t, ctx).Get("X-Auth-User-Id"); id != planted {
		t.Fatalf("the planted cookie was not used: %q, want %q", id, planted)
	}

	// The victim signs up.
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/signup?return_to=/"), chromedp.WaitVisible("#username", chromedp.ByID),
		chromedp.SendKeys("#username", "victim", chromedp.ByID),
		chromedp.SendKeys("#password", "correct horse battery", chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID),
	)
	waitLocation(t, ctx, s.Base+"/")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != planted || h.Get("X-Auth-User-Tag") != "normal-user" {
		t.Fatalf("the victim after signing up: %v", h)
	}
	cs := sessionCookies(t, ctx)
	if len(cs) != 1 || cs[0].Value == handle {
		t.Fatalf("the victim's cookie after signing up: %+v (planted %q)", cs, handle)
	}

	// The attacker's cookie is no session: no identity for the app, the
	// cookie cleared, the members' area closed.
	r := attacker.fetch("/api/x")
	if id := seen(t, r).Get("X-Auth-User-Id"); id != "" {
		t.Fatalf("the attacker's old cookie is still a session of %q", id)
	}
	if c := sessionSetCookie(t, r); c == nil || c.MaxAge >= 0 {
		t.Fatalf("the attacker's cookie was not cleared: %v", r.Header.Values("Set-Cookie"))
	}
	req, _ := http.NewRequest(http.MethodGet, s.Base+"/members/", nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Cookie", "guestauth_session="+handle)
	if r := newVisitor(t, s).send(req); r.Status != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/auth/sign") {
		t.Fatalf("the attacker's cookie at /members/: %d %s %s", r.Status, r.Header.Get("Location"), r.Body)
	}

	// A handle seen now dies with the next password change.
	seenHandle := cs[0].Value
	run(t, ctx, chromedp.Navigate(s.Base+"/auth/account"), chromedp.WaitVisible("#password", chromedp.ByID),
		chromedp.SendKeys("#current_password", "correct horse battery", chromedp.ByID),
		chromedp.SendKeys("#password", "another good password", chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID),
	)
	// The answer comes back to the same URL: wait for its cookie.
	var cs2 []*network.Cookie
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		// Mid-navigation the page's cookies may read as none: wait for
		// the one cookie of the answer.
		if cs2 = sessionCookies(t, ctx); len(cs2) == 1 && cs2[0].Value != seenHandle {
			break
		}
	}
	if len(cs2) != 1 || cs2[0].Value == seenHandle {
		var msg string
		run(t, ctx, chromedp.OuterHTML("body", &msg, chromedp.ByQuery))
		t.Fatalf("the cookie after the password change: %+v; page: %s", cs2, msg)
	}
	waitLocation(t, ctx, s.Base+"/auth/account")
	req, _ = http.NewRequest(http.MethodGet, s.Base+"/api/x", nil)
	req.Header.Set("Cookie", "guestauth_session="+seenHandle)
	if id := seen(t, s.exchange(req)).Get("X-Auth-User-Id"); id != "" {
		t.Fatalf("a handle from before the password change is still a session of %q", id)
	}
	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != planted || h.Get("X-Auth-User-Name") != "victim" {
		t.Fatalf("the victim after the password change: %v", h)
	}
}

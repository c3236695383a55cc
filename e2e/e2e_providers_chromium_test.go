package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/guestauth/caddy-guestauth/internal/oidcrp/oidcrptest"
)

// startProviderSite is the browser site with one provider, zitadel's
// example OP (a real OpenID Provider, in this test process), whose client
// accepts the site's callback.
func startProviderSite(t *testing.T) *server {
	t.Helper()
	s, _ := startProviderSiteOP(t)
	return s
}

// startProviderSiteOP is startProviderSite, also returning the OP's issuer.
func startProviderSiteOP(t *testing.T) (*server, string) {
	t.Helper()
	s := newServer(t)
	issuer := oidcrptest.Start(t, s.Base+"/auth/provider/testidp/callback")
	s.Start(s.browserSite(fmt.Sprintf(`provider testidp {
		issuer %s
		client_id %s
		client_secret %s
		label "Test IdP"
	}`, issuer, oidcrptest.ClientID, oidcrptest.ClientSecret)))
	return s, issuer
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

// The provider's answer tampered with on its way through the browser (the
// Fetch domain rewrites one navigation's URL before Chromium sends it),
// each refused with the reason in the page, the guest left a guest with
// the same session:
//   - bad state: the callback's state swapped for one nobody issued;
//   - wrong issuer: the callback's iss (RFC 9207) made another issuer's;
//   - bad nonce: the authorization request's nonce swapped on its way to
//     the OP. The OP (zitadel's, unmodified) then signs an ID token with
//     that nonce, a valid token of another request: the closest honest way
//     to a bad nonce, since a correct OP with PKCE never sends one.
//
// Then a good sign-in, and its callback replayed: refused, the member
// unchanged.
func TestChromiumProviderTamperedAnswers(t *testing.T) {
	needChromium(t)
	s, opIssuer := startProviderSiteOP(t)
	ctx := newChromium(t)

	var mu sync.Mutex
	var tamper func(u *url.URL) bool // the URL to change, and how; nil: none
	var seen []string                // callback URLs as sent
	chromedp.ListenTarget(ctx, func(ev any) {
		e, ok := ev.(*fetch.EventRequestPaused)
		if !ok {
			return
		}
		go func() {
			u, _ := url.Parse(e.Request.URL)
			mu.Lock()
			changed := tamper != nil && tamper(u)
			if u.Path == "/auth/provider/testidp/callback" {
				seen = append(seen, u.String())
			}
			mu.Unlock()
			c := chromedp.FromContext(ctx)
			cont := fetch.ContinueRequest(e.RequestID)
			if changed {
				cont = cont.WithURL(u.String())
			}
			if err := cont.Do(cdp.WithExecutor(ctx, c.Target)); err != nil {
				t.Logf("continuing %s: %v", u, err)
			}
		}()
	})
	run(t, ctx, fetch.Enable()) // every request pauses; tamper picks
	setTamper := func(f func(u *url.URL) bool) {
		mu.Lock()
		tamper = f
		mu.Unlock()
	}
	// param changes one parameter of the requests to host's path.
	param := func(host, path, key, value string) func(u *url.URL) bool {
		return func(u *url.URL) bool {
			if u.Host != host || u.Path != path {
				return false
			}
			q := u.Query()
			q.Set(key, value)
			u.RawQuery = q.Encode()
			return true
		}
	}

	const callback = "/auth/provider/testidp/callback"
	site := strings.TrimPrefix(s.Base, "http://")
	op := strings.TrimSuffix(strings.TrimPrefix(opIssuer, "http://"), "/") // its authorization endpoint is /auth

	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	guest := echoed(t, ctx)
	guestID := guest.Get("X-Auth-User-Id")
	if guestID == "" || guest.Get("X-Auth-User-Tag") != "guest-user" {
		t.Fatalf("not a guest: %v", guest)
	}
	cookies := sessionCookies(t, ctx)
	for _, tc := range []struct {
		name   string
		tamper func(u *url.URL) bool
		want   string
	}{
		{"bad state", param(site, callback, "state", strings.Repeat("A", 43)), "expired or was already used"},
		{"wrong issuer", param(site, callback, "iss", "https://evil.example/"), "did not come from the provider this sign-in was sent to"},
		{"bad nonce", param(op, "/auth", "nonce", "someone-elses-nonce"), "belongs to another sign-in"},
	} {
		setTamper(tc.tamper)
		run(t, ctx, chromedp.Navigate(s.Base+"/auth/signin?return_to=/"),
			chromedp.WaitVisible(`a[href*="/auth/provider/testidp/start"]`, chromedp.ByQuery),
			chromedp.Click(`a[href*="/auth/provider/testidp/start"]`, chromedp.ByQuery),
			chromedp.WaitVisible("#username", chromedp.ByID),
			chromedp.SendKeys("#username", "alice", chromedp.ByID),
			chromedp.SendKeys("#password", oidcrptest.Password, chromedp.ByID),
			chromedp.Submit("#password", chromedp.ByID),
			chromedp.WaitVisible(".error", chromedp.ByQuery))
		setTamper(nil)
		if body := text(t, ctx, "main"); !strings.Contains(body, tc.want) {
			t.Fatalf("%s: the page says %q, want %q", tc.name, body, tc.want)
		}
		run(t, ctx, chromedp.Navigate(s.Base+"/"))
		if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guestID || h.Get("X-Auth-User-Tag") != "guest-user" {
			t.Fatalf("%s: after the refusal: %v; want guest %s", tc.name, h, guestID)
		}
		if after := sessionCookies(t, ctx); len(after) != 1 || len(cookies) != 1 || after[0].Value != cookies[0].Value {
			t.Fatalf("%s: the session cookie changed: %+v -> %+v", tc.name, cookies, after)
		}
	}

	// Untouched, the same guest becomes alice; the callback replayed is
	// refused and changes nothing.
	mu.Lock()
	seen = nil
	mu.Unlock()
	continueWithTestIdP(t, ctx, s, "/auth/signin?return_to=/", "alice", s.Base+"/")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guestID || h.Get("X-Auth-User-Tag") != "normal-user" || h.Get("X-Auth-User-Name") != "alice" {
		t.Fatalf("after the good sign-in: %v", h)
	}
	mu.Lock()
	if len(seen) != 1 {
		t.Fatalf("callbacks: %v", seen)
	}
	replay := seen[0]
	mu.Unlock()
	member := sessionCookies(t, ctx)
	run(t, ctx, chromedp.Navigate(replay), chromedp.WaitVisible(".error", chromedp.ByQuery))
	if body := text(t, ctx, "main"); !strings.Contains(body, "expired or was already used") {
		t.Fatalf("replayed callback: %s", body)
	}
	run(t, ctx, chromedp.Navigate(s.Base+"/"))
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guestID || h.Get("X-Auth-User-Name") != "alice" {
		t.Fatalf("after the replay: %v", h)
	}
	if after := sessionCookies(t, ctx); len(after) != 1 || after[0].Value != member[0].Value {
		t.Fatalf("the replay changed the session cookie")
	}
}

// The API client's upgrade over real HTTP, through a real Caddy and the
// OP: the app asks POST /api/provider-start with its guest's access
// token, a browser (a cookie jar, no cookie of the guest) opens the URL
// and signs in at the OP, comes back to the app's redirect URI with a
// code, and the app redeems it for the member's tokens: the same id.
func TestProviderStartForAnAPIGuestOverHTTP(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	issuer := oidcrptest.Start(t, s.Base+"/auth/provider/testidp/callback")
	const appCB = "http://app.test/cb"
	s.Start(s.browserSite(fmt.Sprintf(`provider testidp {
		issuer %s
		client_id %s
		client_secret %s
	}`, issuer, oidcrptest.ClientID, oidcrptest.ClientSecret), "client api-app api-secret {\nredirect_uri "+appCB+"\n}"))
	guest := decodeTokens(t, s.postForm("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"api-app"}, "client_secret": {"api-secret"}, "code": {"guest-user"}}))
	_, gc := jwtParts(t, guest.AccessToken)

	verifier := strings.Repeat("v", 43)
	sum := sha256.Sum256([]byte(verifier))
	r := s.postForm("/api/provider-start", url.Values{"provider": {"testidp"}, "client_id": {"api-app"}, "redirect_uri": {appCB},
		"state": {"s1"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}},
		"Authorization", "Bearer "+guest.AccessToken)
	var start struct {
		URL       string `json:"url"`
		ExpiresIn int    `json:"expires_in"`
	}
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &start) != nil || !strings.HasPrefix(start.URL, s.Base+"/auth/provider/testidp/start?handoff=") {
		t.Fatalf("provider-start: %d %s", r.Status, r.Body)
	}
	// Without the token: RFC 6750.
	if r := s.postForm("/api/provider-start", url.Values{"provider": {"testidp"}}); r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Fatalf("without a token: %d %v", r.Status, r.Header)
	}

	jar, _ := cookiejar.New(nil)
	var back *url.URL
	browser := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), appCB) {
			back = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := browser.Get(start.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	login, err := oidcrptest.SignIn(resp, string(body), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if resp, err = browser.Do(login); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if back == nil || back.Query().Get("state") != "s1" || back.Query().Get("code") == "" || back.Query().Get("iss") != s.Base {
		t.Fatalf("back at the app: %v (last at %s, %d)", back, resp.Request.URL, resp.StatusCode)
	}
	member := decodeTokens(t, s.postForm("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {"api-app"}, "client_secret": {"api-secret"},
		"code": {back.Query().Get("code")}, "redirect_uri": {appCB}, "code_verifier": {verifier}}))
	_, mc := jwtParts(t, member.IDToken)
	if mc["sub"] != gc["sub"] || mc["preferred_username"] != "alice" {
		t.Fatalf("member %v; want sub %v", mc, gc["sub"])
	}
	if r := s.get("/app", member.AccessToken); r.Status != http.StatusOK || s.Upstream.Headers().Get("X-Auth-User-Tag") != "normal-user" {
		t.Fatalf("the member's token at the app: %d %v", r.Status, s.Upstream.Headers())
	}
	if r := s.get("/app", guest.AccessToken); r.Status == http.StatusOK && s.Upstream.Headers().Get("X-Auth-User-Id") != "" {
		t.Fatalf("the guest's old token still works")
	}
}

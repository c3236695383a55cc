package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	cdpwa "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// Passkeys in a real Chromium with a virtual authenticator (the DevTools
// WebAuthn domain), on http://localhost (a secure context, so WebAuthn
// runs): a guest saves its account with a passkey on the account page and
// is a member with the same id; signed out, it signs in with the passkey
// (no username typed) as the same id; the passkey, the last way in, cannot
// be removed until a password is set, then it can.
func TestChromiumPasskeys(t *testing.T) {
	needChromium(t)
	axe := axeSource(t)
	s := newServer(t)
	base := fmt.Sprintf("http://localhost:%d", s.Port)
	s.Start(fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://localhost:%d {
	@page header Accept *text/html*
	guest_auth {
		storage %s
		issuer %s
		%s
		browser {
			create_guest @page
			passkeys
		}
	}
	reverse_proxy %s
}
`, s.Admin, s.Port, s.DB, base, testLimits(""), strings.TrimPrefix(s.Upstream.URL, "http://")))
	ctx := newChromium(t)
	var auth cdpwa.AuthenticatorID
	run(t, ctx, chromedp.ActionFunc(func(ctx context.Context) error {
		if err := cdpwa.Enable().WithEnableUI(false).Do(ctx); err != nil {
			return err
		}
		var err error
		auth, err = cdpwa.AddVirtualAuthenticator(&cdpwa.VirtualAuthenticatorOptions{
			Protocol: cdpwa.AuthenticatorProtocolCtap2, Ctap2version: cdpwa.Ctap2versionCtap21,
			Transport: cdpwa.AuthenticatorTransportInternal, HasResidentKey: true,
			HasUserVerification: true, IsUserVerified: true,
			AutomaticPresenceSimulation: true, // sent only when true: Go's false would be sent as false
			DefaultBackupEligibility:    true, DefaultBackupState: true,
		}).Do(ctx)
		return err
	}))

	// A guest.
	run(t, ctx, chromedp.Navigate(base+"/"))
	h := echoed(t, ctx)
	guest := h.Get("X-Auth-User-Id")
	if guest == "" || h.Get("X-Auth-User-Tag") != "guest-user" {
		t.Fatalf("first visit: %v", h)
	}

	// Save with a passkey, on the account page.
	run(t, ctx, chromedp.Navigate(base+"/auth/account"), chromedp.WaitVisible("#passkey-register", chromedp.ByID))
	checkPage(t, ctx, axe, "passkeys-guest-account")
	run(t, ctx, chromedp.SendKeys("#passkey-name", "virtual key", chromedp.ByID),
		chromedp.Click("#passkey-register", chromedp.ByID),
	)
	waitFor(t, ctx, `input[name="passkey_name"]`)
	if v := attr(t, ctx, `input[name="passkey_name"]`, "value"); v != "virtual key" {
		t.Fatalf("listed passkey name %q", v)
	}
	checkPage(t, ctx, axe, "passkeys-member-account")
	run(t, ctx, chromedp.Navigate(base+"/"))
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guest || h.Get("X-Auth-User-Tag") != "normal-user" {
		t.Fatalf("after saving a passkey: %v; want the guest's id %s as a normal user", h, guest)
	}
	var creds []*cdpwa.Credential
	run(t, ctx, chromedp.ActionFunc(func(ctx context.Context) (err error) {
		creds, err = cdpwa.GetCredentials(auth).Do(ctx)
		return err
	}))
	if len(creds) != 1 || !creds[0].IsResidentCredential || creds[0].RpID != "localhost" {
		t.Fatalf("the authenticator holds %+v; want one discoverable credential for localhost", creds)
	}

	// Sign out, then sign in with the passkey.
	run(t, ctx, chromedp.Navigate(base+"/auth/signout"), chromedp.WaitVisible("button", chromedp.ByQuery),
		chromedp.Click("button", chromedp.ByQuery))
	waitLocation(t, ctx, base+"/")
	if id := echoed(t, ctx).Get("X-Auth-User-Id"); id == guest {
		t.Fatal("still signed in after signing out")
	}
	run(t, ctx, chromedp.Navigate(base+"/auth/signin?return_to=/"), chromedp.WaitVisible("#passkey-signin", chromedp.ByID))
	checkPage(t, ctx, axe, "passkeys-signin")
	run(t, ctx, chromedp.Click("#passkey-signin", chromedp.ByID))
	waitLocation(t, ctx, base+"/")
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guest || h.Get("X-Auth-User-Tag") != "normal-user" {
		t.Fatalf("after the passkey sign-in: %v; want %s", h, guest)
	}

	// The last way in stays; with a password it can go.
	run(t, ctx, chromedp.Navigate(base+"/auth/account"), chromedp.WaitVisible(`button[aria-label^="Remove the passkey"]`, chromedp.ByQuery),
		chromedp.Click(`button[aria-label^="Remove the passkey"]`, chromedp.ByQuery))
	waitText(t, ctx, "last way to sign in")
	checkPage(t, ctx, axe, "passkeys-last-refused")
	run(t, ctx, chromedp.Navigate(base+"/auth/account"), chromedp.WaitVisible("#password", chromedp.ByID),
		chromedp.SendKeys("#password", "correct horse battery", chromedp.ByID),
		chromedp.Submit("#password", chromedp.ByID))
	waitText(t, ctx, "Change password") // the answer: the account page of a user with a password
	run(t, ctx, chromedp.Navigate(base+"/auth/account"), chromedp.WaitVisible(`button[aria-label^="Remove the passkey"]`, chromedp.ByQuery),
		chromedp.Click(`button[aria-label^="Remove the passkey"]`, chromedp.ByQuery))
	waitText(t, ctx, "No passkeys yet.")
	run(t, ctx, chromedp.Navigate(base+"/"))
	if h := echoed(t, ctx); h.Get("X-Auth-User-Id") != guest {
		t.Fatalf("after removing the passkey: %v", h)
	}
}

// waitFor waits until sel is on the page.
func waitFor(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Run(wctx, chromedp.WaitVisible(sel, chromedp.ByQuery)); err != nil {
		var body string
		_ = chromedp.Run(ctx, chromedp.OuterHTML("body", &body, chromedp.ByQuery))
		t.Fatalf("waiting for %s: %v\n%s", sel, err, body)
	}
}

package e2e

// Real clients nobody here wrote, run unchanged against a real Caddy with
// a bbolt store: the npm packages pinned in testdata/clients (openid-client,
// casdoor-nodejs-sdk, casdoor-js-sdk, @authgear/web), each driven by a
// script there under node, with the browser SDKs given hand-written
// browser globals; casdoor-go-sdk as a Go module (e2e_casdoor_go_test.go);
// oauth2-proxy built from its module (e2e_oauth2_proxy_test.go). The
// interactive part, the sign-in pages, is driven by the pages' own links
// and forms. The scripts print "ok - <step>" per step and "FAIL - <step>:
// <why>" on the first failure.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The client registrations of the clients site. The redirect URIs are never
// fetched (the scripts stop at them), except the browser SDKs' page origin
// sdkOrigin, whose /callback the SDKs derive from their page.
const (
	sdkApp       = "sdk-app"
	sdkAppSecret = "sdk-secret"
	sdkAppCB     = "http://app.test/callback"
	sdkAppBye    = "http://app.test/"
	sdkOrigin    = "http://localhost:3000"
	sdkSpa       = "sdk-spa"
	sdkPlain     = "sdk-plain"
	sdkPlainSec  = "plain-secret"
	sdkOrg       = "acme"
)

// clientsSite renders the Caddyfile the client tests share: an
// organization, a confidential client that manages users, one that does
// not, and a public browser client (PKCE, Authgear web anonymous users).
func (s *server) clientsSite() string {
	return fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		issuer %s
		organization %s
		cors_origins %s
		client %s %s {
			redirect_uri %s
			post_logout_redirect_uri %s
			manage_users
		}
		client %s %s
		client %s {
			public
			guests keypair web
			redirect_uri %s/callback
			post_logout_redirect_uri %s/
		}
		guest_limit ip 100000 1ms
		max_live_guests 0
		browser
	}
	reverse_proxy %s
}
`, s.Admin, s.Port, s.DB, s.Base, sdkOrg, sdkOrigin,
		sdkApp, sdkAppSecret, sdkAppCB, sdkAppBye,
		sdkPlain, sdkPlainSec,
		sdkSpa, sdkOrigin, sdkOrigin,
		strings.TrimPrefix(s.Upstream.URL, "http://"))
}

// clientPackages are the npm packages testdata/clients pins.
var clientPackages = map[string]string{
	"openid-client":      "6.9.1",
	"casdoor-nodejs-sdk": "1.24.0",
	"casdoor-js-sdk":     "0.18.0",
	"@authgear/web":      "6.0.0",
}

// needClientPackages returns the node binary once node and the pinned
// package pkg are installed: without them the test fails under CI and
// skips elsewhere.
func needClientPackages(t *testing.T, pkg string) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: %s (.ci/run installs node and runs npm ci in e2e/testdata/clients)", msg)
		}
		t.Skipf("%s; to run this test: npm ci --prefix e2e/testdata/clients", msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "clients", "node_modules", filepath.FromSlash(pkg), "package.json"))
	if err != nil {
		missing("the npm package %s is not installed: %v", pkg, err)
	}
	var meta struct{ Version string }
	if err := json.Unmarshal(raw, &meta); err != nil || meta.Version != clientPackages[pkg] {
		missing("%s %q installed, want %s (%v)", pkg, meta.Version, clientPackages[pkg], err)
	}
	return node
}

// runClientScript runs testdata/clients/<script> under node with env and
// fails the test with its output, which names the failed step.
func runClientScript(t *testing.T, node, script string, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = filepath.Join("testdata", "clients")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	t.Logf("%s:\n%s", script, out)
	return string(out)
}

// openid-client: discovery, the code flow with PKCE, state and nonce
// through the pages (as a guest), the ID token validated with its
// signature, UserInfo, refresh, introspection, revocation (the revoked
// refresh token then refused), client_secret_basic with the signed-in
// browser (a code at once, the same user), and RP-initiated logout (back
// to the app with its state, then the sign-in page again).
func TestS18cOpenIDClient(t *testing.T) {
	t.Parallel()
	node := needClientPackages(t, "openid-client")
	s := newServer(t)
	s.Start(s.clientsSite())
	runClientScript(t, node, "openid-client.mjs",
		"ISSUER="+s.Base, "CLIENT_ID="+sdkApp, "CLIENT_SECRET="+sdkAppSecret,
		"REDIRECT_URI="+sdkAppCB, "LOGOUT_URI="+sdkAppBye)
}

// casdoor-nodejs-sdk: the certificate PEM from /.well-known/jwks (x5c),
// a guest through getAuthToken("guest-user") (Basic and the body secret
// together), parseJwtToken (owner = the organization, id = sub, tag
// guest-user; a forged signature refused), refreshToken, a code from the
// pages (sign-up through getSignInUrl, redeemed without redirect_uri, state
// = the app name), and the user API of a manage_users client: getUser
// (password masked), getUsers, updateUser, addUser + setPassword (then a
// sign-in with that password through the pages), deleteUser; a client
// without manage_users gets 403 in Casdoor's envelope.
func TestS18cCasdoorNodeSDK(t *testing.T) {
	t.Parallel()
	node := needClientPackages(t, "casdoor-nodejs-sdk")
	s := newServer(t)
	s.Start(s.clientsSite())
	runClientScript(t, node, "casdoor-nodejs-sdk.mjs",
		"ENDPOINT="+s.Base, "ORGANIZATION="+sdkOrg, "CLIENT_ID="+sdkApp, "CLIENT_SECRET="+sdkAppSecret,
		"PLAIN_CLIENT_ID="+sdkPlain, "PLAIN_CLIENT_SECRET="+sdkPlainSec, "REDIRECT_URI="+sdkAppCB)
}

// casdoor-js-sdk in Node, as a page at sdkOrigin (hand-written window,
// location, storage; fetch with the browser's CORS checks, so cors_origins
// is exercised): signin_redirect to /login/oauth/authorize with PKCE, the
// pages as a guest, exchangeForAccessToken as a public client,
// parseAccessToken (owner, id, tag), getUserInfo (preflighted),
// refreshAccessToken with client_id only, and a forged state refused.
func TestS18cCasdoorJSSDK(t *testing.T) {
	t.Parallel()
	node := needClientPackages(t, "casdoor-js-sdk")
	s := newServer(t)
	s.Start(s.clientsSite())
	runClientScript(t, node, "casdoor-js-sdk.mjs",
		"APP_ORIGIN="+sdkOrigin, "SERVER_URL="+s.Base, "CLIENT_ID="+sdkSpa, "ORGANIZATION="+sdkOrg)
}

// @authgear/web in Node, as a page at sdkOrigin (hand-written globals
// installed before the import; fetch with the browser's CORS checks):
// configure (discovery), authenticateAnonymously (web anonymous sign-up,
// is_anonymous true), refreshAccessToken and fetchUserInfo,
// startPromoteAnonymousUser (a promotion code, then the authorization
// endpoint with the anonymous login_hint, signing up on the pages) and
// finishPromoteAnonymousUser keeping the sub with is_anonymous false,
// logout (the refresh token revoked at the server), and a sign-in with the
// promoted account through startAuthentication.
func TestS18cAuthgearWeb(t *testing.T) {
	t.Parallel()
	node := needClientPackages(t, "@authgear/web")
	s := newServer(t)
	s.Start(s.clientsSite())
	runClientScript(t, node, "authgear-web.mjs", "APP_ORIGIN="+sdkOrigin, "ENDPOINT="+s.Base, "CLIENT_ID="+sdkSpa)
}

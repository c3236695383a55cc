package e2e

// oauth2-proxy, built from its Go module at a pinned version, in front of
// an app, with guest_auth as its OpenID Provider: a real Chromium signs in
// through guest_auth's pages and reaches the app through the proxy.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// oauth2ProxyModule is the oauth2-proxy release the test builds.
const oauth2ProxyModule = "github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6"

var (
	oauth2ProxyOnce sync.Once
	oauth2ProxyPath string
	oauth2ProxyErr  error
)

// oauth2ProxyBin builds oauth2-proxy once per test binary with `go
// install module@version` (outside this module and the workspace, so its
// dependencies stay out of ours; the module and build caches keep later
// builds short) into the directory of the Caddy binary.
func oauth2ProxyBin(t *testing.T) string {
	t.Helper()
	oauth2ProxyOnce.Do(func() {
		dir := filepath.Dir(caddyBin)
		start := time.Now()
		cmd := exec.Command("go", "install", "-ldflags", "-X github.com/oauth2-proxy/oauth2-proxy/v7/pkg/version.VERSION=v7.15.6", oauth2ProxyModule)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=", "GOBIN="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			oauth2ProxyErr = fmt.Errorf("go install %s: %v\n%s", oauth2ProxyModule, err, out)
			return
		}
		oauth2ProxyPath = filepath.Join(dir, "oauth2-proxy")
		t.Logf("built %s in %s", oauth2ProxyModule, time.Since(start).Round(time.Second))
	})
	if oauth2ProxyErr != nil {
		t.Fatal(oauth2ProxyErr)
	}
	return oauth2ProxyPath
}

// oauth2ProxySite renders a Caddyfile: guest_auth with the pages and the
// proxy's client, whose callback is on proxyOrigin.
func (s *server) oauth2ProxySite(proxyOrigin string) string {
	return fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		issuer %s
		client %s %s {
			redirect_uri %s/oauth2/callback
		}
		guest_limit ip 100000 1ms
		max_live_guests 0
		browser
	}
	reverse_proxy %s
}
`, s.Admin, s.Port, s.DB, s.Base, sdkApp, sdkAppSecret, proxyOrigin, strings.TrimPrefix(s.Upstream.URL, "http://"))
}

// startOAuth2Proxy runs oauth2-proxy on port in front of app with
// guest_auth at issuer as its provider, as docs/sdks.md configures it.
func startOAuth2Proxy(t *testing.T, bin, issuer string, port int, app string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--provider=oidc",
		"--oidc-issuer-url="+issuer,
		"--client-id="+sdkApp, "--client-secret="+sdkAppSecret,
		fmt.Sprintf("--redirect-url=http://localhost:%d/oauth2/callback", port),
		fmt.Sprintf("--http-address=127.0.0.1:%d", port),
		"--upstream="+app+"/",
		"--cookie-secret=0123456789abcdef0123456789abcdef",
		"--cookie-secure=false",
		"--email-domain=*",
		"--oidc-email-claim=sub",
		"--code-challenge-method=S256",
		"--skip-provider-button=true",
	)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting oauth2-proxy: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("oauth2-proxy's log:\n%s", logs.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		select {
		case <-done:
			t.Fatalf("oauth2-proxy exited:\n%s", logs.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("oauth2-proxy not listening after 30s:\n%s", logs.String())
}

// oauth2-proxy (provider oidc, PKCE) in front of an app: Chromium opens
// the app through the proxy, is sent to guest_auth's sign-in page,
// continues as a guest, and comes back through the proxy's callback (code
// redeemed, ID token verified against the JWKS) to the app, which gets
// X-Forwarded-User and X-Forwarded-Email: the guest's user id, the same
// guest_auth tells its own upstream for that browser.
func TestS18cOAuth2Proxy(t *testing.T) {
	t.Parallel()
	needChromium(t)
	bin := oauth2ProxyBin(t)
	s := newServer(t)
	port := freePort(t)
	proxyOrigin := fmt.Sprintf("http://localhost:%d", port)
	s.Start(s.oauth2ProxySite(proxyOrigin))
	app := newUpstream(t)
	startOAuth2Proxy(t, bin, s.Base, port, app.URL)

	ctx := newChromium(t)
	run(t, ctx, chromedp.Navigate(proxyOrigin+"/some/page?x=1"))
	if loc := location(t, ctx); !strings.HasPrefix(loc, s.Base+"/auth/signin?") {
		t.Fatalf("through the proxy without a session: at %s, want guest_auth's sign-in page", loc)
	}
	run(t, ctx,
		chromedp.Click(`a[href^="/auth/guest"]`, chromedp.ByQuery),
		chromedp.WaitVisible(`form[action="/auth/guest"] button`, chromedp.ByQuery),
		chromedp.Click(`form[action="/auth/guest"] button`, chromedp.ByQuery),
		chromedp.WaitReady(`body`, chromedp.ByQuery),
	)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.HasPrefix(location(t, ctx), proxyOrigin+"/some/page") {
		if time.Now().After(deadline) {
			var body string
			run(t, ctx, chromedp.Text("body", &body, chromedp.ByQuery))
			t.Fatalf("not back at the app through the proxy: at %s: %s", location(t, ctx), body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := echoed(t, ctx)
	user := got.Get("X-Forwarded-User")
	if user == "" || got.Get("X-Forwarded-Email") != user {
		t.Fatalf("the app behind oauth2-proxy got X-Forwarded-User %q, X-Forwarded-Email %q", user, got.Get("X-Forwarded-Email"))
	}
	// The same browser at guest_auth's own site: the same user.
	run(t, ctx, chromedp.Navigate(s.Base+"/app"))
	if id := echoed(t, ctx).Get("X-Auth-User-Id"); id != user {
		t.Fatalf("oauth2-proxy's user %q, guest_auth's %q", user, id)
	}
	// Without the proxy's cookie: sent to sign in, the app not reached.
	hits := app.Hits()
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	r, err := noFollow.Get(proxyOrigin + "/some/page")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusFound || !strings.HasPrefix(r.Header.Get("Location"), s.Base+"/oauth/authorize?") || app.Hits() != hits {
		t.Fatalf("through the proxy without its cookie: %d %s (app hits %d, were %d)", r.StatusCode, r.Header.Get("Location"), app.Hits(), hits)
	}
}

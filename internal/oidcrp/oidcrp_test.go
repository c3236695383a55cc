package oidcrp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/oidcrp"
	"github.com/guestauth/caddy-guestauth/internal/oidcrp/oidcrptest"
)

const redirect = "http://localhost:9/auth/provider/testidp/callback"

func startOP(t *testing.T) string { return oidcrptest.Start(t, redirect) }

func newProvider(t *testing.T, issuer string) *oidcrp.Provider {
	t.Helper()
	p, err := oidcrp.New(oidcrp.Config{Name: "testidp", Issuer: issuer, ClientID: "web", ClientSecret: "secret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// authorize follows the authorization URL as a browser would, signs in as
// user on the OP's form and returns the query the OP sent to the callback.
func authorize(t *testing.T, authURL, user string) url.Values {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	var callback *url.URL
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			callback = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	login, err := oidcrptest.SignIn(resp, string(body), user)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = c.Do(login)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if callback == nil {
		t.Fatalf("the OP did not redirect to the callback (status %d at %s)", resp.StatusCode, resp.Request.URL)
	}
	return callback.Query()
}

func begin(t *testing.T, p *oidcrp.Provider) (oidcrp.Pending, string, string) {
	t.Helper()
	pend, binding, err := p.NewPending(redirect)
	if err != nil {
		t.Fatal(err)
	}
	authURL, err := p.AuthURL(context.Background(), "state-1", pend)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(authURL)
	q := u.Query()
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") != pend.Nonce || q.Get("state") != "state-1" ||
		!strings.Contains(q.Get("scope"), "openid") || q.Get("redirect_uri") != redirect {
		t.Fatalf("authorization request %s", authURL)
	}
	return pend, binding, authURL
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	var e *oidcrp.Error
	if !errors.As(err, &e) || e.Reason != reason {
		t.Fatalf("err = %v, want reason %s", err, reason)
	}
}

func TestSignInWithRealOP(t *testing.T) {
	t.Parallel()
	issuer := startOP(t)
	p := newProvider(t, issuer)
	for _, user := range []string{"alice", "bob"} {
		pend, binding, authURL := begin(t, p)
		q := authorize(t, authURL, user)
		if q.Get("state") != "state-1" {
			t.Fatalf("state %q", q.Get("state"))
		}
		id, err := p.Finish(context.Background(), q, pend, binding)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"alice": "u1", "bob": "u2"}[user]
		if id.Issuer != issuer || id.Subject != want || id.PreferredUsername == "" {
			t.Fatalf("%s: identity %+v", user, id)
		}
		// The code is single-use at the OP: a replay is refused.
		_, err = p.Finish(context.Background(), q, pend, binding)
		wantReason(t, err, oidcrp.ReasonCode)
	}
}

// Every check of the callback refuses on its own: the browser binding,
// the PKCE verifier, the nonce, the issuer (RFC 9207), the provider's
// error, a missing code.
func TestCallbackRefusals(t *testing.T) {
	t.Parallel()
	issuer := startOP(t)
	p := newProvider(t, issuer)
	ctx := context.Background()
	cases := []struct {
		name   string
		mutate func(q url.Values, pend *oidcrp.Pending, binding *string)
		reason string
	}{
		{"no binding cookie", func(_ url.Values, _ *oidcrp.Pending, b *string) { *b = "" }, oidcrp.ReasonBinding},
		{"another browser's binding", func(_ url.Values, _ *oidcrp.Pending, b *string) { *b += "x" }, oidcrp.ReasonBinding},
		{"another provider's request", func(_ url.Values, pend *oidcrp.Pending, _ *string) { pend.Provider = "other" }, oidcrp.ReasonIssuer},
		{"wrong iss", func(q url.Values, _ *oidcrp.Pending, _ *string) { q.Set("iss", "https://evil.example/") }, oidcrp.ReasonIssuer},
		{"two iss", func(q url.Values, _ *oidcrp.Pending, _ *string) { q["iss"] = []string{issuer, issuer} }, oidcrp.ReasonIssuer},
		{"provider error", func(q url.Values, _ *oidcrp.Pending, _ *string) { q.Del("code"); q.Set("error", "access_denied") }, oidcrp.ReasonDenied},
		{"no code", func(q url.Values, _ *oidcrp.Pending, _ *string) { q.Del("code") }, oidcrp.ReasonCode},
		{"wrong PKCE verifier", func(_ url.Values, pend *oidcrp.Pending, _ *string) { pend.Verifier = strings.Repeat("a", 43) }, oidcrp.ReasonCode},
		{"wrong nonce", func(_ url.Values, pend *oidcrp.Pending, _ *string) { pend.Nonce = "another" }, oidcrp.ReasonNonce},
	}
	for _, tc := range cases {
		pend, binding, authURL := begin(t, p)
		q := authorize(t, authURL, "alice")
		tc.mutate(q, &pend, &binding)
		_, err := p.Finish(ctx, q, pend, binding)
		if err == nil {
			t.Fatalf("%s: accepted", tc.name)
		}
		var e *oidcrp.Error
		if !errors.As(err, &e) || e.Reason != tc.reason {
			t.Fatalf("%s: %v, want reason %s", tc.name, err, tc.reason)
		}
	}
	// The right iss is accepted.
	pend, binding, authURL := begin(t, p)
	q := authorize(t, authURL, "alice")
	q.Set("iss", issuer)
	if _, err := p.Finish(ctx, q, pend, binding); err != nil {
		t.Fatalf("with the right iss: %v", err)
	}
}

// Discovery: an issuer that is down, or whose metadata names another
// issuer, is unavailable (and tried again later), never trusted.
func TestDiscoveryFailures(t *testing.T) {
	t.Parallel()
	issuer := startOP(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	down := "http://" + ln.Addr().String()
	ln.Close()
	for _, iss := range []string{down, strings.TrimSuffix(issuer, "/")} {
		p := newProvider(t, iss)
		pend, _, _ := p.NewPending(redirect)
		_, err := p.AuthURL(context.Background(), "s", pend)
		wantReason(t, err, oidcrp.ReasonUnavailable)
	}
	for _, bad := range []oidcrp.Config{
		{Name: "", Issuer: issuer, ClientID: "web"},
		{Name: "x", Issuer: "ftp://idp", ClientID: "web"},
		{Name: "x", Issuer: issuer + "?q=1", ClientID: "web"},
		{Name: "x", Issuer: issuer},
	} {
		if _, err := oidcrp.New(bad, nil); err == nil {
			t.Fatalf("New(%+v) accepted", bad)
		}
	}
}

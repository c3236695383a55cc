package e2e

// The OpenID Provider over a real Caddy with a real store: the
// authorization code flow through the built-in pages, driven by a cookie
// jar posting the pages' forms, with golang.org/x/oauth2 and
// github.com/coreos/go-oidc/v3 as the first real client (discovery, PKCE,
// code exchange, ID token verification against the JWKS, UserInfo,
// refresh); the same across two Caddy nodes on PostgreSQL, each step on
// the other node; and the certificates of the JWKS.

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// The redirect URIs of the test clients: never fetched, the browser stops
// when it is sent there.
const (
	oidcAppCB  = "http://app.test/callback"
	oidcSpaCB  = "http://spa.test/callback"
	oidcAppBye = "http://app.test/"
)

// oidcSite renders a Caddyfile: guest_auth with the browser pages and two
// clients of the authorization endpoint, under issuer.
func (s *server) oidcSite(issuer string) string {
	return fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		issuer %s
		client oidc-app oidc-secret {
			redirect_uri %s
			post_logout_redirect_uri %s
		}
		client oidc-spa {
			public
			redirect_uri %s
		}
		guest_limit ip 100000 1ms
		guest_limit global 500 20ms
		max_live_guests 0
		browser
	}
	reverse_proxy %s
}
`, s.Admin, s.Port, s.DB, issuer, oidcAppCB, oidcAppBye, oidcSpaCB, strings.TrimPrefix(s.Upstream.URL, "http://"))
}

// jarBrowser is a browser without JavaScript: a cookie jar (shared by
// every node of one site: cookies do not depend on the port), no redirect
// followed by itself.
type jarBrowser struct {
	t *testing.T
	c *http.Client
}

func newJarBrowser(t *testing.T) *jarBrowser {
	jar, _ := cookiejar.New(nil)
	return &jarBrowser{t: t, c: &http.Client{Jar: jar, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *jarBrowser) send(req *http.Request) *response {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

func (b *jarBrowser) get(u string) *response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/html")
	return b.send(req)
}

// submit posts a page's form as the page's own origin does.
func (b *jarBrowser) submit(base, path string, form url.Values) *response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.send(req)
}

// formReturnTo is the return_to of the form on a page.
func formReturnTo(t *testing.T, page *response) string {
	t.Helper()
	const marker = `name="return_to" value="`
	body := string(page.Body)
	i := strings.Index(body, marker)
	if i < 0 {
		t.Fatalf("no form with return_to (%d): %s", page.Status, body)
	}
	v := body[i+len(marker):]
	return strings.ReplaceAll(v[:strings.Index(v, `"`)], "&amp;", "&")
}

// codeFrom parses the redirect to the client: the callback's parameters.
func codeFrom(t *testing.T, r *response, redirect string) url.Values {
	t.Helper()
	loc := r.Header.Get("Location")
	if r.Status != http.StatusFound || !strings.HasPrefix(loc, redirect+"?") {
		t.Fatalf("want a redirect to %s, got %d %q: %s", redirect, r.Status, loc, r.Body)
	}
	q, err := url.ParseQuery(strings.TrimPrefix(loc, redirect+"?"))
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// signInThroughPages follows an authorization request from a browser
// without a session: the sign-in page (on pagesBase), "continue as a
// guest", and back to the authorization endpoint (on backBase). It
// returns the final redirect.
func (b *jarBrowser) signInThroughPages(authURL, pagesBase, backBase string) *response {
	b.t.Helper()
	first := b.get(authURL)
	loc := first.Header.Get("Location")
	if first.Status != http.StatusSeeOther || !strings.HasPrefix(loc, "/auth/signin?") {
		b.t.Fatalf("want the sign-in page, got %d %q: %s", first.Status, loc, first.Body)
	}
	page := b.get(pagesBase + loc)
	if page.Status != 200 || !strings.Contains(string(page.Body), "continue as a guest") || !strings.Contains(string(page.Body), "Sign up") {
		b.t.Fatalf("sign-in page: %d %s", page.Status, page.Body)
	}
	back := formReturnTo(b.t, page)
	if r := b.submit(pagesBase, "/auth/guest", url.Values{"return_to": {back}}); r.Status != http.StatusSeeOther || r.Header.Get("Location") != back {
		b.t.Fatalf("continue as a guest: %d %s", r.Status, r.Header.Get("Location"))
	}
	return b.get(backBase + back)
}

// goClient is golang.org/x/oauth2 with go-oidc against issuer, as an app
// would set them up.
type goClient struct {
	issuer   string
	provider *oidc.Provider
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newGoClient(t *testing.T, ctx context.Context, issuer, id, secret, redirect string) *goClient {
	t.Helper()
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &goClient{issuer: issuer, provider: p, verifier: p.Verifier(&oidc.Config{ClientID: id}), conf: oauth2.Config{
		ClientID: id, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: redirect,
		Scopes: []string{oidc.ScopeOpenID, "profile"},
	}}
}

// login runs the whole flow for browser b (signInThroughPages when it
// has no session) and returns the token and its verified ID token.
func (c *goClient) login(t *testing.T, ctx context.Context, b *jarBrowser, pagesBase, backBase string) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	pkce := oauth2.GenerateVerifier()
	state, nonce := "state-"+pkce[:8], "nonce-"+pkce[8:16]
	authURL := c.conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(pkce))
	var r *response
	if pagesBase == "" {
		r = b.get(authURL)
	} else {
		r = b.signInThroughPages(authURL, pagesBase, backBase)
	}
	q := codeFrom(t, r, c.conf.RedirectURL)
	if q.Get("state") != state || q.Get("iss") != c.issuer {
		t.Fatalf("callback %v (state %s)", q, state)
	}
	tok, err := c.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := c.verifier.Verify(ctx, raw)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Fatalf("ID token nonce %q, want %q", idt.Nonce, nonce)
	}
	return tok, idt
}

// x/oauth2 and go-oidc, the first real client: discovery, the code flow
// with PKCE through the pages, the ID token verified against the JWKS,
// UserInfo, refresh, a public client; a replayed code is refused and ends
// the session it made.
func TestS18aGoOIDCClientBolt(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.Start(s.oidcSite(s.Base))
	ctx := context.Background()
	app := newGoClient(t, ctx, s.Base, "oidc-app", "oidc-secret", oidcAppCB)
	b := newJarBrowser(t)
	tok, idt := app.login(t, ctx, b, s.Base, s.Base)
	var claims struct {
		Anonymous bool   `json:"is_anonymous"`
		SID       string `json:"sid"`
		AuthTime  int64  `json:"auth_time"`
	}
	if err := idt.Claims(&claims); err != nil || !claims.Anonymous || claims.SID == "" || claims.AuthTime == 0 {
		t.Fatalf("ID token claims %+v, %v", claims, err)
	}
	info, err := app.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil || info.Subject != idt.Subject {
		t.Fatalf("userinfo: %+v, %v", info, err)
	}
	// The upstream sees the access token's user.
	if r := s.get("/app", tok.AccessToken); r.Status != 200 || s.Upstream.Headers().Get("X-Auth-User-Id") != idt.Subject {
		t.Fatalf("proxied: %d %s", r.Status, s.Upstream.Headers().Get("X-Auth-User-Id"))
	}
	// Refresh through x/oauth2's token source once the access token is
	// past its expiry.
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	next, err := app.conf.TokenSource(ctx, &expired).Token()
	if err != nil || next.AccessToken == tok.AccessToken || next.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v", err)
	}
	// The same browser, signed in: a code at once, for the public client
	// too (x/oauth2 sends Basic with an empty secret).
	spa := newGoClient(t, ctx, s.Base, "oidc-spa", "", oidcSpaCB)
	_, idt2 := spa.login(t, ctx, b, "", "")
	if idt2.Subject != idt.Subject {
		t.Fatalf("another user for the same browser: %s, %s", idt2.Subject, idt.Subject)
	}

	// A replayed code: refused, and the tokens of its first redemption die.
	pkce := oauth2.GenerateVerifier()
	q := codeFrom(t, b.get(app.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(pkce))), oidcAppCB)
	first, err := app.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pkce))
	if err != nil {
		t.Fatal(err)
	}
	_, err = app.conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pkce))
	var re *oauth2.RetrieveError
	if !asRetrieve(err, &re) || re.ErrorCode != "invalid_grant" {
		t.Fatalf("replay: %v", err)
	}
	if r := s.get("/oauth/userinfo", first.AccessToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("the replayed code's access token still works: %d", r.Status)
	}

	// RP-initiated logout with the ID token: signed out, back to the app.
	raw, _ := tok.Extra("id_token").(string)
	r := b.get(s.Base + "/oauth/logout?" + url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {oidcAppBye}, "state": {"x"}}.Encode())
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != oidcAppBye+"?state=x" {
		t.Fatalf("logout: %d %s", r.Status, r.Header.Get("Location"))
	}
	if r := b.get(app.conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(pkce))); r.Status != http.StatusSeeOther {
		t.Fatalf("still signed in after the logout: %d %s", r.Status, r.Header.Get("Location"))
	}
}

func asRetrieve(err error, re **oauth2.RetrieveError) bool {
	e, ok := err.(*oauth2.RetrieveError)
	if ok {
		*re = e
	}
	return ok
}

// A guest who signs in to an account through the authorization endpoint
// is merged as on the pages: the app hears of it on the next request.
func TestS18aSignInThroughAuthorizeMerges(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.Start(s.oidcSite(s.Base))
	b := newJarBrowser(t)
	// An account, then a guest session in this browser.
	owner := newJarBrowser(t)
	if r := owner.submit(s.Base, "/auth/signup", url.Values{"username": {"rita"}, "password": {"correct horse battery"}, "return_to": {"/"}}); r.Status != http.StatusSeeOther {
		t.Fatalf("sign-up: %d %s", r.Status, r.Body)
	}
	if r := b.submit(s.Base, "/auth/guest", url.Values{"return_to": {"/"}}); r.Status != http.StatusSeeOther {
		t.Fatalf("guest: %d", r.Status)
	}
	guest := seen(t, b.get(s.Base+"/app")).Get("X-Auth-User-Id")
	auth := s.Base + "/oauth/authorize?" + url.Values{"client_id": {"oidc-app"}, "redirect_uri": {oidcAppCB}, "response_type": {"code"},
		"scope": {"openid"}, "prompt": {"login"}}.Encode()
	r := b.get(auth)
	back := formReturnTo(t, b.get(s.Base+r.Header.Get("Location")))
	if r := b.submit(s.Base, "/auth/signin", url.Values{"username": {"rita"}, "password": {"correct horse battery"}, "return_to": {back}}); r.Status != http.StatusSeeOther {
		t.Fatalf("sign-in: %d %s", r.Status, r.Body)
	}
	if q := codeFrom(t, b.get(s.Base+back), oidcAppCB); q.Get("code") == "" {
		t.Fatalf("no code: %v", q)
	}
	h := seen(t, b.get(s.Base+"/app"))
	if h.Get("X-Auth-Merged-From") != guest || h.Get("X-Auth-User-Name") != "rita" {
		t.Fatalf("after the sign-in: merged from %q (want %q), user %q", h.Get("X-Auth-Merged-From"), guest, h.Get("X-Auth-User-Name"))
	}
}

// Two nodes on one PostgreSQL database: every step of the flow on another
// node than the one before (the authorization request stored on A, the
// sign-in on B, the code issued on A, redeemed on B's token endpoint,
// the user info and a replay on A).
func TestS18aAuthorizeAcrossPostgresNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	a, b := newServer(t), newServer(t)
	a.DB, b.DB = fmt.Sprintf("postgres %q", dsn), fmt.Sprintf("postgres %q", dsn)
	a.Start(a.oidcSite(a.Base))
	b.Start(b.oidcSite(a.Base)) // one site: one issuer
	ctx := context.Background()
	app := newGoClient(t, ctx, a.Base, "oidc-app", "oidc-secret", oidcAppCB)
	pkce := oauth2.GenerateVerifier()
	br := newJarBrowser(t)
	first := br.get(app.conf.AuthCodeURL("st", oidc.Nonce("nn"), oauth2.S256ChallengeOption(pkce)))
	page := br.get(b.Base + first.Header.Get("Location"))
	back := formReturnTo(t, page)
	if r := br.submit(b.Base, "/auth/guest", url.Values{"return_to": {back}}); r.Status != http.StatusSeeOther {
		t.Fatalf("guest on B: %d", r.Status)
	}
	q := codeFrom(t, br.get(a.Base+back), oidcAppCB)
	redeem := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {oidcAppCB}, "code_verifier": {pkce}}
	r := b.postForm("/api/login/oauth/access_token", redeem, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("oidc-app:oidc-secret")))
	if r.Status != 200 {
		t.Fatalf("redeem on B: %d %s", r.Status, r.Body)
	}
	set := r.JSON(t)
	idt, err := app.verifier.Verify(ctx, set["id_token"].(string))
	if err != nil || idt.Nonce != "nn" {
		t.Fatalf("ID token from B: %v", err)
	}
	if r := a.get("/oauth/userinfo", set["access_token"].(string)); r.Status != 200 || r.JSON(t)["sub"] != idt.Subject {
		t.Fatalf("userinfo on A: %d %s", r.Status, r.Body)
	}
	again := a.postForm("/oauth/token", redeem, "Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("oidc-app:oidc-secret")))
	if again.Status != 400 || again.JSON(t)["error"] != "invalid_grant" {
		t.Fatalf("replay on A: %d %s", again.Status, again.Body)
	}
	if r := b.refresh(set["refresh_token"].(string)); r.Status == 200 {
		t.Fatal("the replayed code's refresh token still works on B")
	}
}

// Each key of the JWKS, at both of its paths, carries its certificate,
// which stays the same across a restart: a PEM made from it (as
// docs/sdks.md shows) verifies the tokens.
func TestS18aJWKSCertificates(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.Start(s.oidcSite(s.Base))
	_, set, raw := s.discover()
	casdoor := s.get("/.well-known/jwks", "")
	if casdoor.Status != 200 || string(casdoor.Body) != string(raw) {
		t.Fatalf("/.well-known/jwks: %d, differs from jwks.json: %s", casdoor.Status, casdoor.Body)
	}
	key, ok := set.Key(set.Len() - 1)
	if !ok {
		t.Fatal("empty JWKS")
	}
	chain := key.X509CertChain()
	if chain == nil || chain.Len() != 1 {
		t.Fatalf("no x5c in %s", raw)
	}
	b64der, _ := chain.Get(0)
	der, err := base64.StdEncoding.DecodeString(string(b64der))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	var pub any
	if err := key.Raw(&pub); err != nil {
		t.Fatal(err)
	}
	if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
		t.Fatal("the certificate's key is not the JWK's")
	}
	s.Stop()
	s.Start(s.oidcSite(s.Base))
	_, set2, _ := s.discover()
	key2, _ := set2.LookupKeyID(key.KeyID())
	if key2 == nil {
		t.Fatal("the key is gone after the restart")
	}
	if c2, _ := key2.X509CertChain().Get(0); string(c2) != string(b64der) {
		t.Fatal("the certificate changed across the restart")
	}
}

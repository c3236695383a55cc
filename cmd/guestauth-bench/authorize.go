//go:build linux

package main

// The authorization code flow for a visitor already signed in (its browser
// session cookie sent), measured next to a refresh, the other way a client
// gets a token set for a user it knows: one side is GET /oauth/authorize
// (a code issued and stored) then the code redeemed at /oauth/token (with
// PKCE and client authentication: a new session of the client); the other
// a refresh_token grant. Each operation uses a session of its own, made
// before the round and not measured, so neither side's cost grows with a
// user's session count. The target is the code flow at most 1.3 times a
// refresh.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// authzAlgs are the algorithms the code flow is measured with: RS256, where
// signing dominates, and ES256, where the store writes do.
var authzAlgs = []string{"RS256", "ES256"}

const (
	authzCB       = "http://bench.invalid/cb"
	benchVerifier = "bench-verifier-0123456789-0123456789-0123456789"
)

// writeAuthzSite adds a guest_auth site with the pages and a client of the
// authorization endpoint; its limits are off, as writeGuestSite's are.
func writeAuthzSite(cf io.Writer, addr, storageLine, issuer, alg string, cacheSize int, upstream string) {
	fmt.Fprintf(cf, `%s {
	guest_auth {
		storage %s
		issuer %s
		signing_alg %s
		client bench-app bench-secret {
			redirect_uri %s
		}
		guest_limit ip 0 1s
		guest_limit global 0 1s
		challenge_limit ip 0 1s
		challenge_limit global 0 1s
		max_live_guests 0
		token_cache_size %d
		browser
	}
	reverse_proxy %s
}
`, addr, storageLine, issuer, alg, authzCB, cacheSize, upstream)
}

// browserSession makes a guest with a browser session on base and returns
// its cookie.
func (b *bench) browserSession(ctx context.Context, base string) (*http.Cookie, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/auth/guest", strings.NewReader("return_to=%2F"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := b.noRedirect().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	for _, c := range resp.Cookies() {
		if c.Name == "guestauth_session" {
			return c, nil
		}
	}
	return nil, fmt.Errorf("POST %s/auth/guest: %d without a session cookie", base, resp.StatusCode)
}

// noRedirect is the bench's client, stopping at redirects.
func (b *bench) noRedirect() *http.Client {
	c := *b.client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// codeFlow is one operation: authorize with the session, redeem the code.
func (b *bench) codeFlow(ctx context.Context, client *http.Client, base string, cookie *http.Cookie) error {
	sum := sha256.Sum256([]byte(benchVerifier))
	q := url.Values{"response_type": {"code"}, "client_id": {"bench-app"}, "redirect_uri": {authzCB}, "scope": {"openid"},
		"state": {"s"}, "nonce": {"n"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/oauth/authorize?"+q.Encode(), nil)
	req.AddCookie(cookie)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusFound || loc.Query().Get("code") == "" {
		return fmt.Errorf("authorize: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	form := url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {authzCB}, "code_verifier": {benchVerifier}}
	treq, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
	treq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	treq.SetBasicAuth("bench-app", "bench-secret")
	return b.call(treq, nil)
}

func refreshReq(ctx context.Context, base, rt string) *http.Request {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("bench-app", "bench-secret")
	return req
}

// authorizeFixtures makes n signed-in browser sessions (each used once
// already, as a visitor's is: a first visit confirms a new session, a
// write the code flow is not to be charged with) and n refresh tokens of
// guests, on base.
func (b *bench) authorizeFixtures(base string, n int) ([]*http.Cookie, []string, error) {
	cookies, refresh := make([]*http.Cookie, n), make([]string, n)
	_, err := b.drive(n, func(ctx context.Context, i int) error {
		var err error
		if cookies[i], err = b.browserSession(ctx, base); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/auth/account", nil)
		req.AddCookie(cookies[i])
		if err := b.call(req, nil); err != nil {
			return err
		}
		var ts struct {
			RefreshToken string `json:"refresh_token"`
		}
		if err := b.call(createReq(ctx, base), &ts); err != nil {
			return err
		}
		refresh[i] = ts.RefreshToken
		return nil
	})
	return cookies, refresh, err
}

// authorizeSides are the code flow and the refresh of each of authzAlgs.
func (b *bench) authorizeSides() []side {
	var sides []side
	n := b.cfg.nCreate
	client := b.noRedirect()
	for _, alg := range authzAlgs {
		base := b.authz[alg]
		var cookies []*http.Cookie
		var refresh []string
		prep := func(int) error {
			var err error
			cookies, refresh, err = b.authorizeFixtures(base, n)
			return err
		}
		sides = append(sides,
			side{name: "authcode-" + alg, n: n, prep: prep,
				run: func(ctx context.Context, i int) error { return b.codeFlow(ctx, client, base, cookies[i]) }},
			side{name: "refresh-" + alg, n: n, prep: prep,
				run: func(ctx context.Context, i int) error { return b.call(refreshReq(ctx, base, refresh[i]), nil) }},
		)
	}
	return sides
}

// authorizeRows are the ratios of the code flow to a refresh, each the
// median over rounds of the two sides measured next to each other.
func (r *results) authorizeRows() []row {
	var rows []row
	for _, alg := range authzAlgs {
		code, refresh := "authcode-"+alg, "refresh-"+alg
		var xs []float64
		for i := range min(len(r.samples[code]), len(r.samples[refresh])) {
			xs = append(xs, float64(r.samples[code][i].perOp())/float64(r.samples[refresh][i].perOp()))
		}
		rows = append(rows, row{
			what: "authorization code flow for a signed-in visitor (authorize + token), " + alg + ", vs a refresh", measured: median(xs), target: 1.3, isRatio: true,
			extra: fmt.Sprintf("code flow %s, refresh %s CPU per operation; %.0f flows/s, %.0f refreshes/s",
				fmtUS(r.perOp(code)), fmtUS(r.perOp(refresh)), r.rate(code), r.rate(refresh)),
		})
	}
	return rows
}

package protocol_test

// In-process tests of the OpenID Provider (the authorization, token,
// end-session, introspection and revocation endpoints) with the real pages
// as its interface, over a real Service on a real bbolt store, served by
// httptest so a cookie jar can play the browser.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/pages"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	_ "github.com/guestauth/caddy-guestauth/storage/bolt"
)

// Redirect URIs of the test clients.
const (
	appCB     = "https://app.example/cb"
	appCB2    = "https://app.example/cb2?tenant=a"
	appBye    = "https://app.example/bye"
	spaCB     = "https://spa.example/cb"
	otherCB   = "https://other.example/cb"
	secretApp = "app-secret"
	opIssuer  = "https://id.example.com"
)

// site is an OP on httptest: the protocol Handler with the pages as its
// browser side, and a clock the test moves.
type site struct {
	t     *testing.T
	srv   *httptest.Server
	h     *protocol.Handler
	pages *pages.Pages
	svc   *accounts.Service
	st    storage.Backend
	clock atomic.Int64 // offset from time.Now, ns
}

func (s *site) now() time.Time { return time.Now().Add(time.Duration(s.clock.Load())) }

func (s *site) advance(d time.Duration) { s.clock.Add(int64(d)) }

func newSite(t *testing.T, tune ...func(*accounts.Config)) *site {
	t.Helper()
	ctx := context.Background()
	s := &site{t: t}
	st, err := storage.Open(ctx, storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "g.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s.st = st
	keys, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	cfg := accounts.Config{
		Alg: jwa.ES256, AccessTTL: time.Hour, SessionIdle: 24 * time.Hour, SessionLifetime: 48 * time.Hour, CacheSize: 100,
		Audiences: []string{"app", "spa", "other", "bare"}, MaxSessionsPerUser: 10,
		Argon2: accounts.Argon2Params{MemoryKiB: 8 * 1024, Time: 1, Threads: 1},
	}
	for _, f := range tune {
		f(&cfg)
	}
	s.svc, err = accounts.New(ctx, st, keys, cfg, s.now)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := pages.Load("")
	if err != nil {
		t.Fatal(err)
	}
	ip := func(*http.Request) string { return "192.0.2.1" }
	issuer := func(*http.Request) string { return opIssuer }
	s.pages = &pages.Pages{
		Accounts: s.svc, Prefix: "/auth/", CookieName: "gs", Templates: tmpl, Issuer: issuer, ClientIP: ip, LimitKey: ip,
		ReadTimeout: 10 * time.Second, Logger: zap.NewNop(), Now: s.now,
	}
	client := func(id, secret string, public bool, redirects, logouts []string) *protocol.Client {
		c := protocol.NewClient(id, []byte(secret), public, "")
		c.RedirectURIs, c.PostLogoutRedirectURIs = redirects, logouts
		return c
	}
	s.h = &protocol.Handler{
		Accounts: s.svc,
		Clients: map[string]*protocol.Client{
			"app":   client("app", secretApp, false, []string{appCB, appCB2}, []string{appBye}),
			"spa":   client("spa", "", true, []string{spaCB}, []string{"https://spa.example/"}),
			"other": client("other", "other-secret", false, []string{otherCB}, nil),
			"bare":  client("bare", "bare-secret", false, nil, nil),
		},
		Issuer: issuer, Origin: issuer, FixedIssuer: true, Alg: jwa.ES256, KeySet: keys.JWKS,
		ClientIP: ip, LimitKey: ip, Logger: zap.NewNop(), Browser: s.pages,
	}
	routes := map[string]func(http.ResponseWriter, *http.Request) error{
		protocol.PathAuthorize: s.h.Authorize, protocol.PathAuthorizeCasdoor: s.h.Authorize,
		protocol.PathEndSession: s.h.EndSession, protocol.PathToken: s.h.Token, protocol.PathTokenCasdoor: s.h.Token,
		protocol.PathIntrospect: s.h.Introspect, protocol.PathIntrospectCasdoor: s.h.Introspect,
		protocol.PathRevoke: s.h.Revoke, protocol.PathUserInfoOAuth: s.h.UserInfo, protocol.PathDiscovery: s.h.Discovery,
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serve := routes[r.URL.Path]
		if strings.HasPrefix(r.URL.Path, "/auth/") {
			serve = s.pages.Serve
		}
		if serve == nil {
			http.NotFound(w, r)
			return
		}
		if err := serve(w, r); err != nil {
			t.Errorf("%s %s: %v", r.Method, r.URL, err)
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (r *reply) location() string { return r.header.Get("Location") }

// json decodes a JSON answer.
func (r *reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("not JSON (%d): %s", r.status, r.body)
	}
	return m
}

// agent is a browser: a cookie jar, redirects not followed.
type agent struct {
	s *site
	c *http.Client
}

func (s *site) agent() *agent {
	jar, _ := cookiejar.New(nil)
	return &agent{s: s, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (a *agent) do(req *http.Request) *reply {
	a.s.t.Helper()
	resp, err := a.c.Do(req)
	if err != nil {
		a.s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// get loads a path (or an absolute URL of the site) as a page.
func (a *agent) get(path string) *reply {
	a.s.t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = a.s.srv.URL + path
	}
	req, _ := http.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Accept", "text/html")
	return a.do(req)
}

// submit posts a form of the site's own pages (same origin).
func (a *agent) submit(path string, form url.Values) *reply {
	a.s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, a.s.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return a.do(req)
}

// post is a client's back-channel form POST (token, introspection, ...).
func (s *site) post(path string, form url.Values, header ...string) *reply {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return (&agent{s: s, c: http.DefaultClient}).do(req)
}

// pkce is a verifier and its S256 challenge.
func pkce(seed string) (verifier, challenge string) {
	verifier = strings.Repeat(seed, 43/len(seed)+1)[:43]
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL is an authorization request of client to redirect with kv
// added (an empty value removes the parameter).
func authorizeURL(client, redirect string, kv ...string) string {
	_, challenge := pkce("v")
	q := url.Values{
		"response_type": {"code"}, "client_id": {client}, "redirect_uri": {redirect}, "scope": {"openid profile"},
		"state": {"st-1"}, "nonce": {"n-1"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			q.Del(kv[i])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	return protocol.PathAuthorize + "?" + q.Encode()
}

// callback parses a redirect to the client: its base and parameters.
func callback(t *testing.T, r *reply, base string) url.Values {
	t.Helper()
	if r.status != http.StatusFound && r.status != http.StatusSeeOther {
		t.Fatalf("want a redirect to %s, got %d %s: %s", base, r.status, r.location(), r.body)
	}
	loc := r.location()
	b, query, _ := strings.Cut(loc, "?")
	if want, wantQ, _ := strings.Cut(base, "?"); b != want || (wantQ != "" && !strings.HasPrefix(query, wantQ+"&")) {
		t.Fatalf("redirect to %s, want %s", loc, base)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	if q.Get("iss") != opIssuer {
		t.Fatalf("redirect %s without iss %s", loc, opIssuer)
	}
	return q
}

// signInAsGuest takes the agent from the sign-in page the authorization
// endpoint sent it to through "continue as a guest", back to the
// authorization endpoint.
func (a *agent) signInAsGuest(r *reply) *reply {
	a.s.t.Helper()
	page := a.followToPage(r, "/auth/signin")
	back := returnTo(a.s.t, page)
	g := a.submit("/auth/guest", url.Values{"return_to": {back}})
	if g.status != http.StatusSeeOther || g.location() != back {
		a.s.t.Fatalf("guest: %d %s", g.status, g.location())
	}
	return a.get(back)
}

// followToPage checks that r sends the browser to the page path and
// loads it.
func (a *agent) followToPage(r *reply, path string) *reply {
	a.s.t.Helper()
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location(), path+"?") {
		a.s.t.Fatalf("want a redirect to %s, got %d %q: %s", path, r.status, r.location(), r.body)
	}
	page := a.get(r.location())
	if page.status != http.StatusOK {
		a.s.t.Fatalf("%s: %d %s", r.location(), page.status, page.body)
	}
	return page
}

// returnTo is the return_to of a page's form.
func returnTo(t *testing.T, page *reply) string {
	t.Helper()
	const marker = `name="return_to" value="`
	i := strings.Index(page.body, marker)
	if i < 0 {
		t.Fatalf("no return_to in the page: %s", page.body)
	}
	v := page.body[i+len(marker):]
	v = v[:strings.Index(v, `"`)]
	return strings.ReplaceAll(v, "&amp;", "&")
}

// redeem exchanges code at the token endpoint.
func (s *site) redeem(form url.Values, header ...string) *reply {
	s.t.Helper()
	form.Set("grant_type", "authorization_code")
	return s.post(protocol.PathToken, form, header...)
}

// codeFor runs an authorization request for an agent with a session and
// returns the code.
func (a *agent) codeFor(path string, redirect string) string {
	a.s.t.Helper()
	q := callback(a.s.t, a.get(path), redirect)
	if q.Get("code") == "" {
		a.s.t.Fatalf("no code: %v", q)
	}
	return q.Get("code")
}

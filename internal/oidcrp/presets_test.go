package oidcrp_test

// The presets' wiring, against a local server speaking each provider's
// documented protocol shape (none of the real providers is reachable from
// the tests): the test's http.Client, the one oidcrp.New takes, routes the
// providers' hosts to it. What it cannot show is that the real providers
// still answer as documented.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/guestauth/caddy-guestauth/internal/oidcrp"
)

const presetRedirect = "https://app.example.com/auth/provider/p/callback"

// shapeServer plays the providers' hosts.
type shapeServer struct {
	t      *testing.T
	srv    *httptest.Server
	key    jwk.Key // signs ID tokens (RS256)
	appleP *ecdsa.PublicKey

	mu    sync.Mutex
	codes map[string]shapeCode
	// iss and tid are what the next ID token says (Microsoft), nonce
	// overrides the request's when set.
	iss, tid, nonce string
	lastAuth        url.Values
	lastSecret      string
}

type shapeCode struct {
	challenge, nonce, redirect, host string
}

func newShapeServer(t *testing.T) *shapeServer {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwk.FromRaw(rk)
	if err != nil {
		t.Fatal(err)
	}
	_ = key.Set(jwk.KeyIDKey, "k1")
	_ = key.Set(jwk.AlgorithmKey, jwa.RS256)
	s := &shapeServer{t: t, key: key, codes: map[string]shapeCode{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

// client routes every https request to the server, keeping the Host.
func (s *shapeServer) client() *http.Client {
	addr := s.srv.Listener.Addr().String()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	return &http.Client{Transport: rewrite{tr}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type rewrite struct{ rt http.RoundTripper }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme = "http" // the server is plain HTTP on loopback; the Host stays the provider's
	return r.rt.RoundTrip(req)
}

func (s *shapeServer) jwks() []byte {
	pub, _ := jwk.PublicKeyOf(s.key)
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	b, _ := json.Marshal(set)
	return b
}

// discovery documents, by host and path.
func discovery(host, path string) (map[string]any, bool) {
	doc := func(iss, auth, token, keys string) map[string]any {
		return map[string]any{"issuer": iss, "authorization_endpoint": auth, "token_endpoint": token, "jwks_uri": keys,
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256"}}
	}
	switch host + path {
	case "accounts.google.com/.well-known/openid-configuration":
		return doc("https://accounts.google.com", "https://accounts.google.com/o/oauth2/v2/auth",
			"https://oauth2.googleapis.com/token", "https://www.googleapis.com/oauth2/v3/certs"), true
	case "appleid.apple.com/.well-known/openid-configuration":
		return doc("https://appleid.apple.com", "https://appleid.apple.com/auth/authorize",
			"https://appleid.apple.com/auth/token", "https://appleid.apple.com/auth/keys"), true
	}
	if host == "login.microsoftonline.com" && strings.HasSuffix(path, "/v2.0/.well-known/openid-configuration") {
		tenant := strings.TrimSuffix(strings.TrimPrefix(path, "/"), "/v2.0/.well-known/openid-configuration")
		iss := "https://login.microsoftonline.com/{tenantid}/v2.0"
		switch {
		case tenant == "consumers":
			iss = "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
		case tenant != "common" && tenant != "organizations":
			iss = "https://login.microsoftonline.com/" + tenant + "/v2.0"
		}
		base := "https://login.microsoftonline.com/" + tenant
		return doc(iss, base+"/oauth2/v2.0/authorize", base+"/oauth2/v2.0/token", base+"/discovery/v2.0/keys"), true
	}
	return nil, false
}

func (s *shapeServer) serve(w http.ResponseWriter, r *http.Request) {
	host, path := r.Host, r.URL.Path //nolint:gosec // a test server
	if doc, ok := discovery(host, path); ok {
		_ = json.NewEncoder(w).Encode(doc)
		return
	}
	switch {
	case path == "/oauth2/v3/certs" || path == "/auth/keys" || strings.HasSuffix(path, "/discovery/v2.0/keys"):
		_, _ = w.Write(s.jwks())
	case path == "/login/oauth/authorize" || path == "/o/oauth2/v2/auth" || path == "/auth/authorize" || strings.HasSuffix(path, "/oauth2/v2.0/authorize"):
		s.authorize(w, r)
	case path == "/login/oauth/access_token" || path == "/token" || path == "/auth/token" || strings.HasSuffix(path, "/oauth2/v2.0/token"):
		s.token(w, r)
	case host == "api.github.com" && path == "/user":
		if r.Header.Get("Authorization") != "Bearer gho_at" || r.Header.Get("Accept") != "application/vnd.github+json" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"message":"Bad credentials"}`))
			return
		}
		_, _ = w.Write([]byte(`{"login":"octocat","id":583231,"node_id":"MDQ6VXNlcjU4MzIzMQ==","name":"The Octocat","email":null}`))
	default:
		http.NotFound(w, r)
	}
}

// authorize signs the user in at once and answers as the provider does:
// a redirect with code and state, or (response_mode=form_post) a page
// whose form posts them.
func (s *shapeServer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	code := fmt.Sprintf("code-%d", time.Now().UnixNano())
	s.mu.Lock()
	s.lastAuth = q
	s.codes[code] = shapeCode{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirect: q.Get("redirect_uri"), host: r.Host}
	s.mu.Unlock()
	if q.Get("code_challenge_method") != "S256" || q.Get("response_type") != "code" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if q.Get("response_mode") == "form_post" {
		fmt.Fprintf(w, `<form method="post" action="%s"><input type="hidden" name="code" value="%s"><input type="hidden" name="state" value="%s"><input type="hidden" name="user" value="%s"></form>`,
			html.EscapeString(q.Get("redirect_uri")), code, html.EscapeString(q.Get("state")), html.EscapeString(`{"name":{"firstName":"A","lastName":"B"},"email":"a@privaterelay.appleid.com"}`))
		return
	}
	u, _ := url.Parse(q.Get("redirect_uri"))
	u.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (s *shapeServer) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s.mu.Lock()
	c, ok := s.codes[r.PostForm.Get("code")]
	delete(s.codes, r.PostForm.Get("code"))
	iss, tid, nonce := s.iss, s.tid, s.nonce
	s.lastSecret = r.PostForm.Get("client_secret")
	s.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	refuse := func(e string) {
		if r.Host == "github.com" { // GitHub: 200 with an error
			w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
			_, _ = w.Write([]byte("error=" + e + "&error_description=refused"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"` + e + `"}`))
	}
	if !ok || c.redirect != r.PostForm.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != c.challenge {
		refuse("invalid_grant")
		return
	}
	clientID, secret := r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	if id, sec, ok := r.BasicAuth(); ok {
		clientID, secret = id, sec
	}
	switch r.Host {
	case "github.com":
		if clientID != "gh-client" || secret != "gh-secret" {
			refuse("incorrect_client_credentials")
			return
		}
		// GitHub answers form-encoded unless asked for JSON.
		w.Header().Set("Content-Type", "application/x-www-form-urlencoded")
		_, _ = w.Write([]byte("access_token=gho_at&scope=&token_type=bearer"))
		return
	case "appleid.apple.com":
		if err := s.checkAppleSecret(clientID, secret); err != nil {
			s.t.Logf("apple client secret: %v", err)
			refuse("invalid_client")
			return
		}
		iss = "https://appleid.apple.com"
	case "oauth2.googleapis.com":
		if secret != "g-secret" {
			refuse("invalid_client")
			return
		}
		iss = "https://accounts.google.com"
	}
	if nonce == "" {
		nonce = c.nonce
	}
	tok, _ := jwt.NewBuilder().Issuer(iss).Subject("user-sub-1").Audience([]string{clientID}).IssuedAt(time.Now()).
		Expiration(time.Now().Add(time.Hour)).Claim("nonce", nonce).Build()
	if tid != "" {
		_ = tok.Set("tid", tid)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256, s.key))
	if err != nil {
		s.t.Error(err)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": string(signed)})
}

// checkAppleSecret verifies the client secret as Apple documents it: an
// ES256 JWT with the key id, iss the team id, sub the client id, aud
// https://appleid.apple.com, not expired.
func (s *shapeServer) checkAppleSecret(clientID, secret string) error {
	msg, err := jws.Parse([]byte(secret))
	if err != nil || len(msg.Signatures()) != 1 {
		return fmt.Errorf("not a JWS: %v", err)
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.Algorithm() != jwa.ES256 || h.KeyID() != "KEY123" {
		return fmt.Errorf("header %v %v", h.Algorithm(), h.KeyID())
	}
	tok, err := jwt.Parse([]byte(secret), jwt.WithKey(jwa.ES256, s.appleP), jwt.WithIssuer("TEAM123"), jwt.WithSubject(clientID),
		jwt.WithAudience("https://appleid.apple.com"), jwt.WithValidate(true))
	if err != nil {
		return err
	}
	if ttl := tok.Expiration().Sub(tok.IssuedAt()); ttl > time.Hour || ttl <= 0 {
		return fmt.Errorf("lifetime %v", ttl)
	}
	var raw map[string]any
	_ = json.Unmarshal(msg.Payload(), &raw)
	if raw["aud"] != "https://appleid.apple.com" {
		return fmt.Errorf("aud %v, want the string Apple documents", raw["aud"])
	}
	return nil
}

// run starts a sign-in with p, follows the provider's answer as a
// browser would and returns the callback's parameters.
func (s *shapeServer) run(t *testing.T, p *oidcrp.Provider) (oidcrp.Pending, url.Values, string) {
	t.Helper()
	pend, binding, err := p.NewPending(presetRedirect)
	if err != nil {
		t.Fatal(err)
	}
	authURL, err := p.AuthURL(context.Background(), "st", pend)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := s.client().Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if loc := resp.Header.Get("Location"); loc != "" {
		u, _ := url.Parse(loc)
		return pend, u.Query(), binding
	}
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	body := string(buf[:n])
	q := url.Values{}
	for _, m := range regexp.MustCompile(`name="([^"]+)" value="([^"]*)"`).FindAllStringSubmatch(body, -1) {
		q.Set(m[1], html.UnescapeString(m[2]))
	}
	if !strings.Contains(body, `method="post" action="`+presetRedirect+`"`) {
		t.Fatalf("no redirect and no form_post page: %d %s", resp.StatusCode, body)
	}
	return pend, q, binding
}

func newPreset(t *testing.T, s *shapeServer, cfg oidcrp.Config) *oidcrp.Provider {
	t.Helper()
	cfg.Name = "p"
	p, err := oidcrp.New(cfg, s.client())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// GitHub: OAuth 2.0 with state and PKCE, no nonce, no ID token; the user
// is read from the API, its numeric id the subject.
func TestPresetGitHub(t *testing.T) {
	t.Parallel()
	s := newShapeServer(t)
	p := newPreset(t, s, oidcrp.Config{Preset: "github", ClientID: "gh-client", ClientSecret: "gh-secret"})
	if p.Issuer() != "https://github.com" || p.FormPost() || len(p.Scopes()) != 0 {
		t.Fatalf("issuer %q form_post %v scopes %v", p.Issuer(), p.FormPost(), p.Scopes())
	}
	pend, q, binding := s.run(t, p)
	if a := s.lastAuth; a.Get("client_id") != "gh-client" || a.Get("state") != "st" || a.Get("nonce") != "" || a.Get("scope") != "" || a.Get("redirect_uri") != presetRedirect {
		t.Fatalf("authorization request %v", a)
	}
	id, err := p.Finish(context.Background(), q, pend, binding)
	if err != nil {
		t.Fatal(err)
	}
	if id.Issuer != "https://github.com" || id.Subject != "583231" || id.PreferredUsername != "octocat" || id.Email != "" {
		t.Fatalf("identity %+v", id)
	}
	// The code is one-time: GitHub's 200-with-error answer is a refusal,
	// not an outage.
	_, err = p.Finish(context.Background(), q, pend, binding)
	wantReason(t, err, oidcrp.ReasonCode)
	// A mixed-up iss is refused here too.
	pend, q, binding = s.run(t, p)
	q.Set("iss", "https://evil.example")
	_, err = p.Finish(context.Background(), q, pend, binding)
	wantReason(t, err, oidcrp.ReasonIssuer)
}

// Google: OpenID Connect at https://accounts.google.com (its discovery
// document's endpoints on other hosts), the ID token verified.
func TestPresetGoogle(t *testing.T) {
	t.Parallel()
	s := newShapeServer(t)
	p := newPreset(t, s, oidcrp.Config{Preset: "google", ClientID: "g-client", ClientSecret: "g-secret"})
	pend, q, binding := s.run(t, p)
	if a := s.lastAuth; a.Get("scope") != "openid email profile" || a.Get("nonce") != pend.Nonce || a.Get("response_mode") != "" {
		t.Fatalf("authorization request %v", a)
	}
	id, err := p.Finish(context.Background(), q, pend, binding)
	if err != nil || id.Issuer != "https://accounts.google.com" || id.Subject != "user-sub-1" {
		t.Fatalf("identity %+v, %v", id, err)
	}
	// A token with another request's nonce is refused.
	s.mu.Lock()
	s.nonce = "someone-elses"
	s.mu.Unlock()
	pend, q, binding = s.run(t, p)
	_, err = p.Finish(context.Background(), q, pend, binding)
	wantReason(t, err, oidcrp.ReasonNonce)
}

// Microsoft: the multi-tenant endpoints' tokens name the user's tenant in
// iss; it must be the template filled with the token's own tid, of a kind
// the tenant setting allows.
func TestPresetMicrosoftTenants(t *testing.T) {
	t.Parallel()
	const org = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	const consumers = "9188040d-6c67-4c5b-b112-36a304b66dad"
	ms := func(tid string) string { return "https://login.microsoftonline.com/" + tid + "/v2.0" }
	for _, tc := range []struct {
		tenant, iss, tid string
		want             string // "" ok, else the reason
	}{
		{"", ms(org), org, ""},
		{"common", ms(consumers), consumers, ""},
		{"common", ms(org), "11111111-2222-3333-4444-555555555555", oidcrp.ReasonIssuer}, // iss and tid disagree
		{"common", "https://evil.example/" + org + "/v2.0", org, oidcrp.ReasonIssuer},
		{"common", ms("not-a-guid"), "not-a-guid", oidcrp.ReasonIssuer},
		{"organizations", ms(org), org, ""},
		{"organizations", ms(consumers), consumers, oidcrp.ReasonIssuer},
		{"consumers", ms(consumers), consumers, ""},
		{"consumers", ms(org), org, oidcrp.ReasonIDToken}, // go-oidc's exact issuer check
		{org, ms(org), org, ""},
		{org, ms(consumers), consumers, oidcrp.ReasonIDToken},
	} {
		t.Run(tc.tenant+"/"+tc.tid, func(t *testing.T) {
			s := newShapeServer(t)
			s.iss, s.tid = tc.iss, tc.tid
			p := newPreset(t, s, oidcrp.Config{Preset: "microsoft", Tenant: tc.tenant, ClientID: "ms-client", ClientSecret: "ms-secret"})
			pend, q, binding := s.run(t, p)
			id, err := p.Finish(context.Background(), q, pend, binding)
			if tc.want != "" {
				wantReason(t, err, tc.want)
				return
			}
			if err != nil || id.Issuer != tc.iss || id.Subject != "user-sub-1" {
				t.Fatalf("identity %+v, %v", id, err)
			}
		})
	}
	// An authorization response's iss (RFC 9207) is held to the same
	// template.
	s := newShapeServer(t)
	s.iss, s.tid = ms(org), org
	p := newPreset(t, s, oidcrp.Config{Preset: "microsoft", ClientID: "ms-client"})
	pend, q, binding := s.run(t, p)
	q.Set("iss", "https://login.microsoftonline.com/{tenantid}/v2.0")
	_, err := p.Finish(context.Background(), q, pend, binding)
	wantReason(t, err, oidcrp.ReasonIssuer)
	q.Set("iss", ms(org))
	if _, err := p.Finish(context.Background(), q, pend, binding); err != nil {
		t.Fatal(err)
	}
	if _, err := oidcrp.New(oidcrp.Config{Name: "m", Preset: "microsoft", Tenant: "contoso.onmicrosoft.com", ClientID: "x"}, nil); err == nil || !strings.Contains(err.Error(), "tenant") {
		t.Fatalf("a domain as tenant: %v", err)
	}
}

func appleKey(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return k, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Apple: OpenID Connect; the client secret is an ES256 JWT the provider
// checks with the developer's public key; asking for name or email makes
// the answer a form POST.
func TestPresetApple(t *testing.T) {
	t.Parallel()
	s := newShapeServer(t)
	k, p8 := appleKey(t)
	s.appleP = &k.PublicKey
	cfg := oidcrp.Config{Preset: "apple", ClientID: "com.example.web", AppleTeamID: "TEAM123", AppleKeyID: "KEY123", ApplePrivateKey: p8}
	p := newPreset(t, s, cfg)
	if p.FormPost() {
		t.Fatal("form_post without name or email")
	}
	pend, q, binding := s.run(t, p)
	id, err := p.Finish(context.Background(), q, pend, binding)
	if err != nil || id.Issuer != "https://appleid.apple.com" || id.Subject != "user-sub-1" {
		t.Fatalf("identity %+v, %v", id, err)
	}
	// With name and email: form_post; the secret is reused while fresh.
	cfg.Scopes = []string{"name", "email"}
	p = newPreset(t, s, cfg)
	pend, q, binding = s.run(t, p)
	if a := s.lastAuth; a.Get("response_mode") != "form_post" || a.Get("scope") != "openid name email" {
		t.Fatalf("authorization request %v", a)
	}
	if q.Get("code") == "" || q.Get("state") != "st" {
		t.Fatalf("form_post fields %v", q)
	}
	if _, err := p.Finish(context.Background(), q, pend, binding); err != nil {
		t.Fatal(err)
	}
	pend, q, binding = s.run(t, p)
	second := s.lastSecret
	if _, err := p.Finish(context.Background(), q, pend, binding); err != nil || s.lastSecret != second {
		t.Fatalf("the secret was not reused: %v", err)
	}
	// Another key: Apple refuses the client.
	_, other := appleKey(t)
	cfg.ApplePrivateKey = other
	p = newPreset(t, s, cfg)
	pend, q, binding = s.run(t, p)
	_, err = p.Finish(context.Background(), q, pend, binding)
	wantReason(t, err, oidcrp.ReasonCode)
}

// Preset options are checked when the configuration loads.
func TestPresetConfigErrors(t *testing.T) {
	t.Parallel()
	_, p8 := appleKey(t)
	for _, tc := range []struct {
		cfg  oidcrp.Config
		want string
	}{
		{oidcrp.Config{Preset: "github", Issuer: "https://github.com", ClientID: "x"}, "mutually exclusive"},
		{oidcrp.Config{Preset: "gitlab", ClientID: "x"}, "unknown preset"},
		{oidcrp.Config{Preset: "github"}, "client_id is required"},
		{oidcrp.Config{ClientID: "x"}, "issuer or preset is required"},
		{oidcrp.Config{Issuer: "https://idp.example", Tenant: "common", ClientID: "x"}, "go with a preset"},
		{oidcrp.Config{Preset: "google", Tenant: "common", ClientID: "x"}, "tenant is a microsoft preset option"},
		{oidcrp.Config{Preset: "google", AppleTeamID: "T", ClientID: "x"}, "apple preset options"},
		{oidcrp.Config{Preset: "apple", ClientID: "x", AppleTeamID: "T", AppleKeyID: "K"}, "needs team_id, key_id and private_key_file"},
		{oidcrp.Config{Preset: "apple", ClientID: "x", ClientSecret: "s", AppleTeamID: "T", AppleKeyID: "K", ApplePrivateKey: p8}, "client_secret is not used"},
		{oidcrp.Config{Preset: "apple", ClientID: "x", AppleTeamID: "T", AppleKeyID: "K", ApplePrivateKey: []byte("not a key")}, "private_key_file"},
	} {
		tc.cfg.Name = "p"
		if _, err := oidcrp.New(tc.cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

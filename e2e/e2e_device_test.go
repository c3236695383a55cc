package e2e

// Integration tests of device key-pair guests (Authgear's anonymous-request
// grant) against the real Caddy binary.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/jwstest"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

const deviceGrant = "urn:authgear:params:oauth:grant-type:anonymous-request"

// deviceClients are guest_auth options adding one client per guest policy
// to the harness's demo-app and other-app (both allowed `both`).
const deviceClients = `client mobile {
			public
		}
		client codeonly code-secret {
			guests code
		}
		client closed closed-secret {
			guests none
		}`

// deviceKey is a device key pair made with jwx, as an app would keep it.
type deviceKey struct {
	alg  jwa.SignatureAlgorithm
	kid  string
	priv jwk.Key
	pub  map[string]any // public JWK, as a JWT header value
}

func newDeviceKey(t *testing.T, alg jwa.SignatureAlgorithm) *deviceKey {
	t.Helper()
	var raw crypto.Signer
	var err error
	switch alg {
	case jwa.RS256:
		raw, err = rsa.GenerateKey(rand.Reader, 2048)
	case jwa.ES256:
		raw, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		t.Fatalf("no key for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 12)
	rand.Read(id)
	k := &deviceKey{alg: alg, kid: base64.RawURLEncoding.EncodeToString(id)}
	if k.priv, err = jwk.FromRaw(raw); err != nil {
		t.Fatal(err)
	}
	k.priv.Set(jwk.KeyIDKey, k.kid)
	k.priv.Set(jwk.AlgorithmKey, alg)
	pub, err := k.priv.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(pub)
	json.Unmarshal(b, &k.pub)
	return k
}

// compactJWS signs exactly the given header and claims with the jwx signer
// of alg; alg "none" gives an empty signature.
func compactJWS(t *testing.T, hdr, claims map[string]any, alg jwa.SignatureAlgorithm, key any) string {
	t.Helper()
	tok, err := jwstest.Compact(hdr, claims, alg, key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// request is the JWT an Authgear SDK sends; edit may change header and
// claims before signing.
func (k *deviceKey) request(t *testing.T, challenge string, withJWK bool, edit func(hdr, claims map[string]any)) string {
	t.Helper()
	hdr := map[string]any{"typ": "vnd.authgear.anonymous-request", "alg": k.alg.String(), "kid": k.kid}
	if withJWK {
		hdr["jwk"] = k.pub
	}
	now := time.Now().Unix()
	claims := map[string]any{"iat": now, "exp": now + 60, "challenge": challenge, "action": "auth"}
	if edit != nil {
		edit(hdr, claims)
	}
	return compactJWS(t, hdr, claims, k.alg, k.priv)
}

// deviceChallenge fetches a challenge and checks Authgear's envelope.
func (s *server) deviceChallenge(t *testing.T) string {
	t.Helper()
	resp := s.postJSON("/oauth2/challenge", map[string]string{"purpose": "anonymous_request"})
	if resp.Status != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("challenge: %d %v %s", resp.Status, resp.Header, resp.Body)
	}
	var body struct {
		Result *struct {
			Token    string `json:"token"`
			ExpireAt string `json:"expire_at"`
		} `json:"result"`
	}
	if err := json.Unmarshal(resp.Body, &body); err != nil || body.Result == nil {
		t.Fatalf("challenge body: %v %s", err, resp.Body)
	}
	exp, err := time.Parse(time.RFC3339Nano, body.Result.ExpireAt)
	if err != nil || len(body.Result.Token) != 32 {
		t.Fatalf("challenge result: %s (%v)", resp.Body, err)
	}
	if left := time.Until(exp); left < 4*time.Minute || left > 5*time.Minute+time.Second {
		t.Fatalf("challenge expires in %s, want 5m", left)
	}
	return body.Result.Token
}

// deviceToken sends the key-pair grant, form-encoded as the SDKs do; an
// empty secret is left out.
func (s *server) deviceToken(clientID, secret, jwt string) *response {
	s.t.Helper()
	form := url.Values{"grant_type": {deviceGrant}, "client_id": {clientID}, "jwt": {jwt}}
	if secret != "" {
		form.Set("client_secret", secret)
	}
	return s.postForm("/oauth/token", form)
}

func wantTokens(t *testing.T, resp *response) (tokenSet, string) {
	t.Helper()
	var ts tokenSet
	if resp.Status != http.StatusOK || json.Unmarshal(resp.Body, &ts) != nil || ts.AccessToken == "" || ts.IDToken == "" ||
		ts.RefreshToken == "" || ts.TokenType != "Bearer" || ts.Scope != "openid" {
		t.Fatalf("token response: %d %s", resp.Status, resp.Body)
	}
	return ts, deviceClaim(t, ts.AccessToken, "sub")
}

// deviceClaim reads a claim without verification (the JWKS tests verify).
func deviceClaim(t *testing.T, tok, name string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err != nil || json.Unmarshal(b, &claims) != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	v, _ := claims[name].(string)
	return v
}

func wantOAuthError(t *testing.T, resp *response, status int, code string) string {
	t.Helper()
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if resp.Status != status || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(resp.Body, &e) != nil || e.Error != code {
		t.Fatalf("got %d %s, want %d %s", resp.Status, resp.Body, status, code)
	}
	return e.Description
}

// proxiedUser calls the app with tok and returns the user id it was given.
func (s *server) proxiedUser(t *testing.T, tok string) http.Header {
	t.Helper()
	resp := s.get("/app", tok)
	var h http.Header
	if resp.Status != http.StatusOK || json.Unmarshal(resp.Body, &h) != nil {
		t.Fatalf("proxied request: %d %s", resp.Status, resp.Body)
	}
	return h
}

// storedDeviceState reads the stopped server's file: the number of users and
// the device record of kid (nil if none).
func storedDeviceState(t *testing.T, path, kid string) (int, *model.Device) {
	t.Helper()
	st := openStopped(t, path)
	defer st.Close()
	stats, err := st.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dev, err := st.GetDevice(context.Background(), kid)
	if errors.Is(err, model.ErrNotFound) {
		dev, err = nil, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return int(stats.Users), dev
}

func TestDeviceKeyPairSignUpAndReLogin(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, deviceClients)
	for _, alg := range []jwa.SignatureAlgorithm{jwa.RS256, jwa.ES256} {
		t.Run(alg.String(), func(t *testing.T) {
			k := newDeviceKey(t, alg)
			ts, sub := wantTokens(t, s.deviceToken("demo-app", "demo-secret", k.request(t, s.deviceChallenge(t), true, nil)))
			if sub == "" || deviceClaim(t, ts.IDToken, "sub") != sub {
				t.Fatalf("sub %q, id token sub %q", sub, deviceClaim(t, ts.IDToken, "sub"))
			}
			h := s.proxiedUser(t, ts.AccessToken)
			if h.Get("X-Auth-User-Id") != sub || h.Get("X-Auth-User-Name") != "guest_"+sub ||
				h.Get("X-Auth-User-Tag") != "guest-user" || h.Get("X-Auth-User-Anonymous") != "true" {
				t.Fatalf("identity headers for %s: %v", sub, h)
			}

			// Later, without the jwk and through the public client: same user.
			ts2, sub2 := wantTokens(t, s.deviceToken("mobile", "", k.request(t, s.deviceChallenge(t), false, nil)))
			if sub2 != sub || ts2.RefreshToken == ts.RefreshToken {
				t.Fatalf("re-login: sub %s (want %s)", sub2, sub)
			}
			if got := s.proxiedUser(t, ts2.AccessToken).Get("X-Auth-User-Id"); got != sub {
				t.Fatalf("proxy injected %q after re-login, want %q", got, sub)
			}
			// The public client refreshes with its client_id alone.
			refreshed := s.postForm("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {"mobile"}, "refresh_token": {ts2.RefreshToken}})
			if _, rsub := wantTokens(t, refreshed); rsub != sub {
				t.Fatalf("refresh: sub %s, want %s", rsub, sub)
			}
		})
	}

	resp := s.get("/.well-known/openid-configuration", "")
	var doc struct {
		Grants  []string `json:"grant_types_supported"`
		Methods []string `json:"token_endpoint_auth_methods_supported"`
	}
	if err := json.Unmarshal(resp.Body, &doc); err != nil || !slices.Contains(doc.Grants, deviceGrant) || !slices.Contains(doc.Methods, "none") {
		t.Fatalf("discovery: %s", resp.Body)
	}
}

func TestDeviceChallengeEndpoint(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	if a, b := s.deviceChallenge(t), s.deviceChallenge(t); a == b {
		t.Fatal("two challenges are equal")
	}
	if resp := s.get("/oauth2/challenge", ""); resp.Status != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d %v", resp.Status, resp.Header)
	}
	for _, body := range []string{`{"purpose":"biometric_request"}`, `{"purpose":"nope"}`, `{}`, `{"purpose":1}`, `{"purpose":"anonymous_request","x":1}`, `[`,
		`{"purpose":"anonymous_request","x":null}`, `{"purpose":null}`,
		`{"purpose":"biometric_request","purpose":"anonymous_request"}`, `{"purpose":"anonymous_request"} {}`} {
		resp := s.do(http.MethodPost, "/oauth2/challenge", strings.NewReader(body), "Content-Type", "application/json")
		var e struct {
			Error *struct {
				Name   string `json:"name"`
				Reason string `json:"reason"`
				Code   int    `json:"code"`
			} `json:"error"`
		}
		if resp.Status != http.StatusBadRequest || json.Unmarshal(resp.Body, &e) != nil || e.Error == nil || e.Error.Name != "Invalid" || e.Error.Code != 400 {
			t.Fatalf("%s: %d %s", body, resp.Status, resp.Body)
		}
	}
	resp := s.do(http.MethodPost, "/oauth2/challenge", strings.NewReader("purpose=anonymous_request"), "Content-Type", "application/x-www-form-urlencoded")
	if resp.Status != http.StatusBadRequest {
		t.Fatalf("form body: %d %s", resp.Status, resp.Body)
	}
}

func TestDeviceChallengeSingleUse(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ch := s.deviceChallenge(t)
	wantTokens(t, s.deviceToken("demo-app", "demo-secret", newDeviceKey(t, jwa.ES256).request(t, ch, true, nil)))
	other := newDeviceKey(t, jwa.ES256)
	desc := wantOAuthError(t, s.deviceToken("demo-app", "demo-secret", other.request(t, ch, true, nil)), http.StatusBadRequest, "invalid_grant")
	if !strings.Contains(desc, "challenge") {
		t.Fatalf("description: %q", desc)
	}

	// Two devices racing for one challenge: exactly one wins.
	for round := range 3 {
		ch := s.deviceChallenge(t)
		var bodies [2]string
		for i := range bodies {
			bodies[i] = url.Values{"grant_type": {deviceGrant}, "client_id": {"demo-app"}, "client_secret": {"demo-secret"},
				"jwt": {newDeviceKey(t, jwa.ES256).request(t, ch, true, nil)}}.Encode()
		}
		var statuses [2]int
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, err := http.Post(s.Base+"/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(bodies[i]))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}()
		}
		close(start)
		wg.Wait()
		slices.Sort(statuses[:])
		if statuses != [2]int{http.StatusOK, http.StatusBadRequest} {
			t.Fatalf("round %d: statuses %v, want one 200 and one 400", round, statuses)
		}
	}
	s.Stop()
	if n, _ := storedDeviceState(t, s.DB, ""); n != 1+3 {
		t.Fatalf("%d users stored, want 4 (one per challenge)", n)
	}
}

func TestDeviceRefusals(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	owner := newDeviceKey(t, jwa.ES256)
	_, sub := wantTokens(t, s.deviceToken("demo-app", "demo-secret", owner.request(t, s.deviceChallenge(t), true, nil)))

	stranger := newDeviceKey(t, jwa.ES256)
	thief := newDeviceKey(t, jwa.RS256)
	thief.kid = owner.kid // the kid is not a secret
	thief.pub["kid"] = owner.kid
	cases := []struct {
		name string
		jwt  func(ch string) string
	}{
		{"alg none", func(ch string) string {
			now := time.Now().Unix()
			return compactJWS(t, map[string]any{"typ": "vnd.authgear.anonymous-request", "alg": "none", "kid": stranger.kid, "jwk": stranger.pub},
				map[string]any{"iat": now, "exp": now + 60, "challenge": ch, "action": "auth"}, jwa.NoSignature, nil)
		}},
		{"HS256", func(ch string) string {
			now := time.Now().Unix()
			return compactJWS(t, map[string]any{"typ": "vnd.authgear.anonymous-request", "alg": "HS256", "kid": owner.kid},
				map[string]any{"iat": now, "exp": now + 60, "challenge": ch, "action": "auth"}, jwa.HS256, []byte("shared-secret-shared-secret-0000"))
		}},
		{"wrong typ", func(ch string) string {
			return stranger.request(t, ch, true, func(hdr, _ map[string]any) { hdr["typ"] = "JWT" })
		}},
		{"expired JWT", func(ch string) string {
			return stranger.request(t, ch, true, func(_, c map[string]any) {
				c["iat"], c["exp"] = time.Now().Add(-10*time.Minute).Unix(), time.Now().Add(-9*time.Minute).Unix()
			})
		}},
		{"wrong key on first use", func(ch string) string {
			return stranger.request(t, ch, true, func(hdr, _ map[string]any) {
				j := maps(newDeviceKey(t, jwa.ES256).pub)
				j["kid"] = stranger.kid
				hdr["jwk"] = j
			})
		}},
		{"other key for a known kid", func(ch string) string { return thief.request(t, ch, true, nil) }},
		{"other key for a known kid, same alg", func(ch string) string {
			k := newDeviceKey(t, jwa.ES256)
			k.kid = owner.kid
			return k.request(t, ch, false, nil)
		}},
		{"garbage", func(string) string { return "a.b.c" }},
	}
	for _, tc := range cases {
		resp := s.deviceToken("demo-app", "demo-secret", tc.jwt(s.deviceChallenge(t)))
		if resp.Status == http.StatusInternalServerError {
			t.Fatalf("%s: 500 %s", tc.name, resp.Body)
		}
		t.Logf("%s: %s", tc.name, wantOAuthError(t, resp, http.StatusBadRequest, "invalid_grant"))
	}
	wantOAuthError(t, s.deviceToken("demo-app", "demo-secret", ""), http.StatusBadRequest, "invalid_request")

	// The owner still signs in, to the same user.
	if _, again := wantTokens(t, s.deviceToken("demo-app", "demo-secret", owner.request(t, s.deviceChallenge(t), false, nil))); again != sub {
		t.Fatalf("owner re-login: %s, want %s", again, sub)
	}
	s.Stop()
	n, dev := storedDeviceState(t, s.DB, owner.kid)
	if n != 1 {
		t.Fatalf("%d users stored, want only the owner", n)
	}
	stored, err := jwk.ParseKey(dev.JWK)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := owner.priv.PublicKey()
	a, _ := stored.Thumbprint(crypto.SHA256)
	b, _ := want.Thumbprint(crypto.SHA256)
	if dev.UserID != sub || !bytes.Equal(a, b) {
		t.Fatalf("stored device %+v is not the owner's key", dev)
	}
	if _, d := storedDeviceState(t, s.DB, stranger.kid); d != nil {
		t.Fatalf("a refused key was stored: %+v", d)
	}
}

func maps(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestDeviceClientPolicies(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, deviceClients)
	key := func() string { return newDeviceKey(t, jwa.ES256).request(t, s.deviceChallenge(t), true, nil) }
	code := func(id, secret string) *response {
		return s.postForm("/oauth/token", url.Values{"grant_type": {"authorization_code"}, "client_id": {id}, "client_secret": {secret}, "code": {"guest-user"}})
	}

	wantTokens(t, s.deviceToken("mobile", "", key()))
	wantOAuthError(t, s.deviceToken("mobile", "anything", key()), http.StatusUnauthorized, "invalid_client")
	wantOAuthError(t, code("mobile", ""), http.StatusBadRequest, "unauthorized_client")

	wantTokens(t, code("codeonly", "code-secret"))
	wantOAuthError(t, s.deviceToken("codeonly", "code-secret", key()), http.StatusBadRequest, "unauthorized_client")

	wantOAuthError(t, s.deviceToken("closed", "closed-secret", key()), http.StatusBadRequest, "unauthorized_client")
	wantOAuthError(t, code("closed", "closed-secret"), http.StatusBadRequest, "unauthorized_client")

	// A confidential client still authenticates; a client written
	// `client <id> <secret>` keeps both ways.
	wantOAuthError(t, s.deviceToken("demo-app", "", key()), http.StatusUnauthorized, "invalid_client")
	wantTokens(t, s.deviceToken("other-app", "other-secret", key()))
	wantTokens(t, code("other-app", "other-secret"))
}

func TestDeviceKeyOfUpgradedUserRefused(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, deviceClients)
	k := newDeviceKey(t, jwa.ES256)
	ts, sub := wantTokens(t, s.deviceToken("mobile", "", k.request(t, s.deviceChallenge(t), true, nil)))
	name := "dev" + strings.ToLower(k.kid[:8])
	name = regexp.MustCompile(`[^a-z0-9]`).ReplaceAllString(name, "x")
	resp := s.postForm("/api/update-user", url.Values{"name": {name}, "password": {"correct horse battery staple"}}, "Authorization", "Bearer "+ts.AccessToken)
	if resp.Status != http.StatusOK || !strings.Contains(string(resp.Body), `"ok"`) {
		t.Fatalf("upgrade: %d %s", resp.Status, resp.Body)
	}
	if h := s.proxiedUser(t, ts.AccessToken); h.Get("X-Auth-User-Tag") != "normal-user" || h.Get("X-Auth-User-Id") != sub {
		t.Fatalf("after upgrade: %v", h)
	}
	desc := wantOAuthError(t, s.deviceToken("mobile", "", k.request(t, s.deviceChallenge(t), false, nil)), http.StatusBadRequest, "invalid_grant")
	if !strings.Contains(desc, "sign in") || !strings.Contains(desc, "password") {
		t.Fatalf("description: %q", desc)
	}
}

// TestDeviceDocExample builds the Go example of docs/device-keys.md and runs
// it twice against a server: one guest, signed in twice.
func TestDeviceDocExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/device-keys.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```go\n")
	src, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no ```go block in docs/device-keys.md")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "devicekey")
	build := exec.Command("go", "build", "-o", bin, filepath.Join(dir, "main.go"))
	build.Dir = ".." // the module root, for jwx
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v\n%s", err, out)
	}

	s := startGuestAuth(t, deviceClients)
	keyFile := filepath.Join(dir, "device-key.json")
	run := func() string {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), "GUESTAUTH_URL="+s.Base, "GUESTAUTH_CLIENT_ID=mobile", "GUESTAUTH_KEY_FILE="+keyFile)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("example: %v\n%s", err, stderr.String())
		}
		ts, sub := wantTokens(t, &response{Status: http.StatusOK, Body: out})
		if got := s.proxiedUser(t, ts.AccessToken).Get("X-Auth-User-Id"); got != sub {
			t.Fatalf("proxy injected %q, want %q", got, sub)
		}
		return sub
	}
	first := run()
	if _, err := os.Stat(keyFile); err != nil {
		t.Fatalf("the example kept no key: %v", err)
	}
	if again := run(); again != first {
		t.Fatalf("second run signed in as %s, want %s", again, first)
	}
	if err := os.Remove(keyFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if fresh := run(); fresh == first {
		t.Fatal("a new key signed in to the old guest")
	}
}

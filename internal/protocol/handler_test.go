package protocol

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	_ "github.com/guestauth/caddy-guestauth/storage/bolt" // the default kind
)

const testIssuer = "https://id.example.com"

// newHandler is a Handler over a real Service on a real bbolt store, with
// a confidential client (app), one that may only use the code request
// (codes) and a public one (mobile).
func newHandler(t *testing.T) *Handler {
	t.Helper()
	return newHandlerCfg(t, nil)
}

// newHandlerCfg is newHandler with mod applied to the Service's config.
func newHandlerCfg(t *testing.T, mod func(st storage.Backend, cfg *accounts.Config)) *Handler {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "g.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	cfg := accounts.Config{
		Alg: jwa.ES256, AccessTTL: time.Hour, SessionIdle: time.Hour, SessionLifetime: time.Hour, CacheSize: 10,
		Audiences: []string{"app", "codes", "mobile", "odd"},
	}
	if mod != nil {
		mod(st, &cfg)
	}
	svc, err := accounts.New(ctx, st, keys, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ip := func(*http.Request) string { return "192.0.2.1" }
	return &Handler{
		Accounts: svc,
		Clients: map[string]*Client{
			"app":    NewClient("app", []byte("app-secret"), false, ""),
			"codes":  NewClient("codes", []byte("codes-secret"), false, GuestsCode),
			"mobile": NewClient("mobile", nil, true, ""),
			"odd":    NewClient("odd", []byte("a+b%c"), false, ""),
		},
		Issuer: func(*http.Request) string { return testIssuer }, Origin: func(*http.Request) string { return testIssuer },
		FixedIssuer: true, Alg: jwa.ES256, KeySet: keys.JWKS, ClientIP: ip, LimitKey: ip, Logger: zap.NewNop(),
	}
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

// call serves one request with serve and decodes the JSON answer.
func call(t *testing.T, serve func(http.ResponseWriter, *http.Request) error, r *http.Request) answer {
	t.Helper()
	w := httptest.NewRecorder()
	if err := serve(w, r); err != nil {
		t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	a := answer{status: w.Code, header: w.Header()}
	if w.Body.Len() > 0 && json.Unmarshal(w.Body.Bytes(), &a.body) != nil {
		t.Fatalf("%s %s: body %s", r.Method, r.URL, w.Body)
	}
	return a
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func form(path string, v url.Values, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

// Every grant of the token endpoint, and its refusals per RFC 6749 §5.2.
func TestTokenEndpoint(t *testing.T) {
	h := newHandler(t)
	guest := url.Values{"grant_type": {"authorization_code"}, "code": {GuestCode}, "client_id": {"app"}, "client_secret": {"app-secret"}}
	first := call(t, h.Token, form(PathToken, guest))
	refresh, _ := first.body["refresh_token"].(string)
	if first.status != 200 || refresh == "" || first.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("guest: %+v", first)
	}
	with := func(v url.Values, kv ...string) url.Values {
		out := url.Values{}
		for k, vs := range v {
			out[k] = vs
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				out.Del(kv[i])
			} else {
				out.Set(kv[i], kv[i+1])
			}
		}
		return out
	}
	basic := "Basic " + "YXBwOmFwcC1zZWNyZXQ=" // app:app-secret
	for _, c := range []struct {
		name      string
		r         *http.Request
		status    int
		code      string // the error code, "" for a token set
		challenge string
	}{
		{"Basic", form(PathToken, with(guest, "client_id", "", "client_secret", ""), "Authorization", basic), 200, "", ""},
		{"wrong secret", form(PathToken, with(guest, "client_secret", "nope")), 401, "invalid_client", ""},
		{"wrong Basic secret", form(PathToken, with(guest, "client_id", "", "client_secret", ""), "Authorization", "Basic YXBwOm5vcGU="), 401, "invalid_client", `Basic realm="guest_auth"`},
		{"unknown client", form(PathToken, with(guest, "client_id", "nobody")), 401, "invalid_client", ""},
		// Casdoor's SDKs send Basic and the body secret together.
		{"Basic and the same body secret", form(PathToken, guest, "Authorization", basic), 200, "", ""},
		{"Basic and another body secret", form(PathToken, with(guest, "client_secret", "app-secret2"), "Authorization", basic), 401, "invalid_client", `Basic realm="guest_auth"`},
		{"Basic and another body client_id", form(PathToken, with(guest, "client_id", "codes"), "Authorization", basic), 400, "invalid_request", ""},
		{"Basic with an unknown client", form(PathToken, with(guest, "client_id", "", "client_secret", ""), "Authorization", "Basic bm9ib2R5OmFwcC1zZWNyZXQ="), 401, "invalid_client", `Basic realm="guest_auth"`},
		// Form-encoded as RFC 6749 §2.3.1 says, or raw as Casdoor's SDKs send them.
		{"Basic, form-encoded", form(PathToken, with(guest, "client_id", "", "client_secret", ""), "Authorization", "Basic "+b64("odd:a%2Bb%25c")), 200, "", ""},
		{"Basic, raw", form(PathToken, with(guest, "client_id", "", "client_secret", ""), "Authorization", "Basic "+b64("odd:a+b%c")), 200, "", ""},
		{"Basic, raw, and the body secret", form(PathToken, with(guest, "client_id", "odd", "client_secret", "a+b%c"), "Authorization", "Basic "+b64("odd:a+b%c")), 200, "", ""},
		{"Basic, wrongly decoded", form(PathToken, with(guest, "client_id", "", "client_secret", ""), "Authorization", "Basic "+b64("odd:a b%c")), 401, "invalid_client", `Basic realm="guest_auth"`},
		{"no grant_type", form(PathToken, with(guest, "grant_type", "")), 400, "invalid_request", ""},
		{"other code", form(PathToken, with(guest, "code", "abc")), 400, "invalid_grant", ""},
		{"unsupported grant", form(PathToken, with(guest, "grant_type", "client_credentials")), 400, "unsupported_grant_type", ""},
		{"public client, code", form(PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {GuestCode}, "client_id": {"mobile"}}), 400, "unauthorized_client", ""},
		{"code-only client, key pair", form(PathToken, url.Values{"grant_type": {accounts.GrantAnonymousRequest}, "jwt": {"x"}, "client_id": {"codes"}, "client_secret": {"codes-secret"}}), 400, "unauthorized_client", ""},
		{"key pair without jwt", form(PathToken, url.Values{"grant_type": {accounts.GrantAnonymousRequest}, "client_id": {"mobile"}}), 400, "invalid_request", ""},
		{"unknown user", form(PathToken, with(guest, "grant_type", "password", "code", "", "username", "nobody", "password", "secret-pw")), 400, "invalid_grant", ""},
		{"refresh", form(PathToken, with(guest, "grant_type", "refresh_token", "code", "", "refresh_token", refresh)), 200, "", ""},
		{"refresh again", form(PathToken, with(guest, "grant_type", "refresh_token", "code", "", "refresh_token", refresh)), 400, "invalid_grant", ""},
	} {
		a := call(t, h.Token, c.r)
		code, _ := a.body["error"].(string)
		if a.status != c.status || code != c.code || a.header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("%s: %d %v WWW-Authenticate %q; want %d %q %q", c.name, a.status, a.body, a.header.Get("WWW-Authenticate"), c.status, c.code, c.challenge)
		}
		if c.code == "" && a.body["access_token"] == nil {
			t.Errorf("%s: no access token in %v", c.name, a.body)
		}
	}
}

// The account API, UserInfo and revocation, for the bearer of an access
// token; a missing or ended one is refused per protocol.
func TestAccountEndpoints(t *testing.T) {
	h := newHandler(t)
	tok := call(t, h.Token, form(PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {GuestCode}, "client_id": {"app"}, "client_secret": {"app-secret"}})).body
	access, refresh := tok["access_token"].(string), tok["refresh_token"].(string)
	bearer := func(method, path string, body url.Values) *http.Request {
		r := form(path, body, "Authorization", "Bearer "+access)
		r.Method = method
		return r
	}
	get := call(t, h.GetAccount, bearer(http.MethodGet, PathGetAccount, nil))
	data, _ := get.body["data"].(map[string]any)
	if get.status != 200 || get.body["status"] != "ok" || data["isAnonymous"] != true || data["id"] == "" {
		t.Fatalf("get-account: %+v", get)
	}
	if a := call(t, h.UserInfo, bearer(http.MethodGet, PathUserInfo, nil)); a.status != 200 || a.body["sub"] != data["id"] {
		t.Fatalf("userinfo: %+v", a)
	}
	if a := call(t, h.UpdateUser, bearer(http.MethodPost, PathUpdateUser, url.Values{"name": {"olive"}})); a.status != 200 || a.body["data"] != "Affected" {
		t.Fatalf("update-user: %+v", a)
	}
	none := httptest.NewRequest(http.MethodGet, PathGetAccount, nil)
	if a := call(t, h.GetAccount, none); a.status != 401 || a.body["status"] != "error" || a.header.Get("WWW-Authenticate") != `Bearer realm="guest_auth"` {
		t.Fatalf("no token: %+v", a)
	}
	if a := call(t, h.UserInfo, httptest.NewRequest(http.MethodGet, PathUserInfo, nil)); a.status != 401 || a.body["error"] != "unauthorized" {
		t.Fatalf("userinfo without a token: %+v", a)
	}
	if a := call(t, h.Revoke, form(PathRevoke, url.Values{"client_id": {"app"}, "client_secret": {"app-secret"}})); a.status != 400 || a.body["error"] != "invalid_request" {
		t.Fatalf("revoke without a token: %+v", a)
	}
	if a := call(t, h.Logout, bearer(http.MethodPost, PathLogout, url.Values{})); a.status != 200 || a.body["status"] != "ok" {
		t.Fatalf("logout: %+v", a)
	}
	ended := call(t, h.GetAccount, bearer(http.MethodGet, PathGetAccount, nil))
	if ended.status != 401 || ended.body["data"] != "invalid_token" || !strings.Contains(ended.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("after logout: %+v", ended)
	}
	// RFC 7009: revoking an ended session's token is still a success.
	if a := call(t, h.Revoke, form(PathRevoke, url.Values{"token": {refresh}, "client_id": {"app"}, "client_secret": {"app-secret"}})); a.status != 200 {
		t.Fatalf("revoke: %+v", a)
	}
}

func TestDiscoveryAndJWKS(t *testing.T) {
	h := newHandler(t)
	a := call(t, h.Discovery, httptest.NewRequest(http.MethodGet, PathDiscovery, nil))
	methods, _ := a.body["token_endpoint_auth_methods_supported"].([]any)
	if a.status != 200 || a.body["issuer"] != testIssuer || a.body["jwks_uri"] != testIssuer+PathJWKS ||
		a.body["token_endpoint"] != testIssuer+PathToken || len(methods) != 3 || methods[2] != "none" {
		t.Fatalf("discovery: %+v", a)
	}
	if got := a.header.Get("Cache-Control"); got != "public, max-age=300" {
		t.Fatalf("discovery of a configured issuer: Cache-Control %q", got)
	}
	h.FixedIssuer = false // the issuer of each request: no shared cache
	if got := call(t, h.Discovery, httptest.NewRequest(http.MethodGet, PathDiscovery, nil)).header.Get("Cache-Control"); got != "no-store" {
		t.Fatalf("discovery of a request's issuer: Cache-Control %q", got)
	}
	k := call(t, h.JWKS, httptest.NewRequest(http.MethodGet, PathJWKS, nil))
	if keys, _ := k.body["keys"].([]any); k.status != 200 || len(keys) == 0 || k.header.Get("Content-Type") != "application/jwk-set+json" {
		t.Fatalf("jwks: %+v", k)
	}
}

func TestChallengeEndpoint(t *testing.T) {
	h := newHandler(t)
	post := func(ct, body string) answer {
		r := httptest.NewRequest(http.MethodPost, PathChallenge, strings.NewReader(body))
		r.Header.Set("Content-Type", ct)
		return call(t, h.Challenge, r)
	}
	a := post("application/json", `{"purpose":"anonymous_request"}`)
	if res, _ := a.body["result"].(map[string]any); a.status != 200 || res["token"] == "" || res["expire_at"] == nil {
		t.Fatalf("challenge: %+v", a)
	}
	for _, c := range []struct {
		ct, body, reason string
		status           int
	}{
		{"text/plain", `{"purpose":"anonymous_request"}`, "InvalidContentType", 400},
		{"application/json", `{"purpose":"anonymous_request","x":"y"}`, "ValidationFailed", 400},
		{"application/json", `{"purpose":"anonymous_request","purpose":"x"}`, "ValidationFailed", 400},
		{"application/json", `{}`, "ValidationFailed", 400},
		{"application/json", `{"purpose":"other"}`, "ValidationFailed", 400},
		{"application/json", `{"purpose":"` + strings.Repeat("a", 5000) + `"}`, "RequestEntityTooLarge", 413},
	} {
		a := post(c.ct, c.body)
		e, _ := a.body["error"].(map[string]any)
		if a.status != c.status || e["reason"] != c.reason {
			t.Errorf("%s %.40s: %+v, want %d %s", c.ct, c.body, a, c.status, c.reason)
		}
	}
}

// Each endpoint refuses another method in its own protocol, with Allow.
func TestRefusals(t *testing.T) {
	for _, c := range []struct {
		refuse Refusal
		allow  string
		status int
		field  string // where the body says it
	}{
		{RefuseToken, "POST", 405, "error_description"},
		{RefuseRevoke, "POST", 405, "error_description"},
		{RefuseGet, "GET, HEAD", 405, "error_description"},
		{RefuseEnvelope, "POST", 405, "msg"},
		{RefuseChallenge, "POST", 405, "error"},
		{RefuseUserInfo, "GET, POST", 405, "error_description"},
	} {
		w := httptest.NewRecorder()
		if err := c.refuse(w, c.allow); err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		if w.Code != c.status || w.Header().Get("Allow") != c.allow || json.Unmarshal(w.Body.Bytes(), &body) != nil || body[c.field] == nil {
			t.Errorf("%d Allow %q %s; want %d Allow %q with %s", w.Code, w.Header().Get("Allow"), w.Body, c.status, c.allow, c.field)
		}
	}
}

package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// checkTokenResponse checks the token endpoint's answer and returns it.
func checkTokenResponse(t *testing.T, resp *response, clientID string) tokenSet {
	t.Helper()
	if resp.Status != http.StatusOK {
		t.Fatalf("status %d: %s", resp.Status, resp.Body)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Fatalf("Cache-Control = %q, want no-store", cc)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q", ct)
	}
	var keys []string
	for k := range resp.JSON(t) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"access_token", "expires_in", "id_token", "refresh_token", "scope", "token_type"}; !slices.Equal(keys, want) {
		t.Fatalf("response keys = %v, want %v", keys, want)
	}
	var ts tokenSet
	if err := json.Unmarshal(resp.Body, &ts); err != nil {
		t.Fatal(err)
	}
	if ts.TokenType != "Bearer" || !slices.Contains(strings.Fields(ts.Scope), "openid") ||
		ts.AccessToken == "" || ts.IDToken == "" || ts.RefreshToken == "" {
		t.Fatalf("token response = %+v", ts)
	}
	_, c := jwtParts(t, ts.AccessToken)
	exp, _ := c["exp"].(json.Number).Int64()
	iat, _ := c["iat"].(json.Number).Int64()
	if ts.ExpiresIn <= 0 || ts.ExpiresIn != exp-iat {
		t.Fatalf("expires_in = %d, access token exp-iat = %d", ts.ExpiresIn, exp-iat)
	}
	if aud := fmt.Sprint(c["aud"]); aud != "["+clientID+"]" && aud != clientID {
		t.Fatalf("aud = %v, want %s", c["aud"], clientID)
	}
	return ts
}

func TestTokenEndpointPathsAndEncodings(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	paths := []string{"/oauth/token", "/api/login/oauth/access_token"}
	type enc struct {
		name   string
		client string
		send   func(path string) *response
	}
	encodings := []enc{
		{"json", "demo-app", func(p string) *response { return s.postJSON(p, guestRequest("demo-app", "demo-secret")) }},
		{"form", "demo-app", func(p string) *response {
			return s.postForm(p, url.Values{"grant_type": {"authorization_code"}, "client_id": {"demo-app"}, "client_secret": {"demo-secret"}, "code": {"guest-user"}})
		}},
		{"basic+form", "other-app", func(p string) *response {
			return s.postForm(p, url.Values{"grant_type": {"authorization_code"}, "code": {"guest-user"}}, "Authorization", basicAuth("other-app", "other-secret"))
		}},
		// Basic with a JSON body that repeats the (same) client_id.
		{"basic+json", "other-app", func(p string) *response {
			return s.postJSON(p, map[string]string{"grant_type": "authorization_code", "client_id": "other-app", "code": "guest-user"}, "Authorization", basicAuth("other-app", "other-secret"))
		}},
	}
	for _, p := range paths {
		for _, e := range encodings {
			t.Run(p+"/"+e.name, func(t *testing.T) {
				t.Parallel()
				ts := checkTokenResponse(t, e.send(p), e.client)
				_, c := jwtParts(t, ts.AccessToken)
				app := s.get("/app", ts.AccessToken)
				if app.Status != http.StatusOK {
					t.Fatalf("app with the new token: %d %s", app.Status, app.Body)
				}
				h := seen(t, app)
				if h.Get("X-Auth-User-Id") != c["sub"] || h.Get("X-Auth-User-Tag") != "guest-user" {
					t.Fatalf("upstream saw %v for sub %v", h, c["sub"])
				}
			})
		}
	}
}

func TestTokenClaimsVerifiedWithJWKS(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			opt := ""
			if alg != "RS256" {
				opt = "signing_alg " + alg // RS256 is the default
			}
			s := startGuestAuth(t, opt)
			before := time.Now().Add(-2 * time.Second)
			ts := checkTokenResponse(t, s.postJSON("/oauth/token", guestRequest("demo-app", "demo-secret")), "demo-app")
			after := time.Now().Add(2 * time.Second)

			doc, set, raw := s.discover()
			if doc["issuer"] != s.Base {
				t.Fatalf("discovery issuer = %v, want the origin %s", doc["issuer"], s.Base)
			}
			if doc["token_endpoint"] != s.Base+"/oauth/token" {
				t.Fatalf("token_endpoint = %v", doc["token_endpoint"])
			}
			if algs := fmt.Sprint(doc["id_token_signing_alg_values_supported"]); !strings.Contains(algs, alg) {
				t.Fatalf("id_token_signing_alg_values_supported = %v", algs)
			}
			// Public keys only: no private JWK members anywhere.
			var rawSet struct{ Keys []map[string]any }
			if err := json.Unmarshal(raw, &rawSet); err != nil || len(rawSet.Keys) == 0 {
				t.Fatalf("JWKS: %v %s", err, raw)
			}
			for _, k := range rawSet.Keys {
				for _, priv := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
					if _, ok := k[priv]; ok {
						t.Fatalf("JWKS key has private member %q: %v", priv, k)
					}
				}
			}
			for i := 0; i < set.Len(); i++ {
				k, _ := set.Key(i)
				if priv, err := jwk.IsPrivateKey(k); err != nil || priv {
					t.Fatalf("JWKS key %s is private", k.KeyID())
				}
			}

			iss := doc["issuer"].(string)
			parse := func(tok string) jwt.Token {
				t.Helper()
				v, err := jwt.ParseString(tok, jwt.WithKeySet(set), jwt.WithValidate(true), jwt.WithIssuer(iss), jwt.WithAudience("demo-app"))
				if err != nil {
					t.Fatalf("token does not verify against the JWKS: %v", err)
				}
				return v
			}

			hdr, _ := jwtParts(t, ts.AccessToken)
			if hdr["alg"] != alg || hdr["typ"] != "at+jwt" {
				t.Fatalf("access token header = %v", hdr)
			}
			at := parse(ts.AccessToken)
			sub := at.Subject()
			if _, err := uuid.Parse(sub); err != nil {
				t.Fatalf("sub %q is not a UUID", sub)
			}
			iat := at.IssuedAt()
			if iat.Before(before) || iat.After(after) {
				t.Fatalf("iat %v not between %v and %v", iat, before, after)
			}
			if !at.NotBefore().Equal(iat) || at.Expiration().Sub(iat) != time.Duration(ts.ExpiresIn)*time.Second {
				t.Fatalf("nbf %v exp %v iat %v expires_in %d", at.NotBefore(), at.Expiration(), iat, ts.ExpiresIn)
			}
			if _, err := uuid.Parse(at.JwtID()); err != nil {
				t.Fatalf("jti %q: %v", at.JwtID(), err)
			}
			pc := at.PrivateClaims()
			if pc["name"] != "guest_"+sub || pc["tag"] != "guest-user" || pc["is_anonymous"] != true ||
				pc["scope"] != "openid" || pc["client_id"] != "demo-app" || pc["sid"] == "" || pc["sid"] == nil {
				t.Fatalf("access token claims = %v", pc)
			}

			idHdr, _ := jwtParts(t, ts.IDToken)
			if idHdr["alg"] != alg || idHdr["typ"] != "JWT" || idHdr["kid"] != hdr["kid"] {
				t.Fatalf("ID token header = %v", idHdr)
			}
			idt := parse(ts.IDToken)
			ic := idt.PrivateClaims()
			authTime, _ := ic["auth_time"].(float64)
			if idt.Subject() != sub || !idt.IssuedAt().Equal(iat) || !idt.Expiration().After(iat) ||
				int64(authTime) < before.Unix() || int64(authTime) > after.Unix() ||
				ic["name"] != "guest_"+sub || ic["preferred_username"] != "guest_"+sub ||
				ic["tag"] != "guest-user" || ic["is_anonymous"] != true || ic["sid"] != pc["sid"] {
				t.Fatalf("ID token claims: sub %s iat %v exp %v private %v", idt.Subject(), idt.IssuedAt(), idt.Expiration(), ic)
			}

		})
	}
}

func TestTokenEndpointBadInput(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	const (
		ctJSON = "application/json"
		ctForm = "application/x-www-form-urlencoded"
	)
	good := `"grant_type":"authorization_code","client_id":"demo-app","client_secret":"demo-secret"`
	form := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v.Encode()
	}
	cases := []struct {
		name      string
		method    string
		ct        string
		body      string
		headers   []string
		status    int
		code      string
		challenge string // wanted WWW-Authenticate prefix
	}{
		{name: "GET", method: http.MethodGet, status: 405, code: "invalid_request"},
		{name: "PUT", method: http.MethodPut, ct: ctJSON, body: `{` + good + `,"code":"guest-user"}`, status: 405, code: "invalid_request"},
		{name: "body over 64KiB", ct: ctJSON, body: `{` + good + `,"code":"guest-user","pad":"` + strings.Repeat("x", 65<<10) + `"}`, status: 413, code: "invalid_request"},
		{name: "form over 64KiB", ct: ctForm, body: form("grant_type", "authorization_code", "client_id", "demo-app", "client_secret", "demo-secret", "code", "guest-user", "pad", strings.Repeat("x", 65<<10)), status: 413, code: "invalid_request"},
		{name: "malformed JSON", ct: ctJSON, body: `{` + good + `,"code":"guest-user"`, status: 400, code: "invalid_request"},
		{name: "JSON array", ct: ctJSON, body: `[{` + good + `,"code":"guest-user"}]`, status: 400, code: "invalid_request"},
		{name: "JSON string", ct: ctJSON, body: `"guest-user"`, status: 400, code: "invalid_request"},
		{name: "JSON null", ct: ctJSON, body: `null`, status: 400, code: "invalid_request"},
		{name: "empty JSON body", ct: ctJSON, body: ``, status: 400, code: "invalid_request"},
		{name: "trailing data", ct: ctJSON, body: `{` + good + `,"code":"guest-user"} {}`, status: 400, code: "invalid_request"},
		{name: "number value", ct: ctJSON, body: `{` + good + `,"code":123}`, status: 400, code: "invalid_request"},
		{name: "bool value", ct: ctJSON, body: `{` + good + `,"code":true}`, status: 400, code: "invalid_request"},
		{name: "array value", ct: ctJSON, body: `{` + good + `,"code":["guest-user"]}`, status: 400, code: "invalid_request"},
		{name: "object value", ct: ctJSON, body: `{` + good + `,"code":{"v":"guest-user"}}`, status: 400, code: "invalid_request"},
		{name: "text/plain", ct: "text/plain", body: `{` + good + `,"code":"guest-user"}`, status: 400, code: "invalid_request"},
		{name: "no Content-Type", body: `{` + good + `,"code":"guest-user"}`, status: 400, code: "invalid_request"},
		{name: "bad Content-Type", ct: "application/json; =", body: `{` + good + `,"code":"guest-user"}`, status: 400, code: "invalid_request"},
		{name: "malformed form", ct: ctForm, body: form("grant_type", "authorization_code", "client_id", "demo-app", "client_secret", "demo-secret") + "&code=%zz", status: 400, code: "invalid_request"},
		{name: "missing grant_type", ct: ctJSON, body: `{"client_id":"demo-app","client_secret":"demo-secret","code":"guest-user"}`, status: 400, code: "invalid_request"},
		{name: "null grant_type", ct: ctJSON, body: `{"grant_type":null,"client_id":"demo-app","client_secret":"demo-secret","code":"guest-user"}`, status: 400, code: "invalid_request"},
		{name: "missing client_id", ct: ctJSON, body: `{"grant_type":"authorization_code","client_secret":"demo-secret","code":"guest-user"}`, status: 400, code: "invalid_request"},
		{name: "missing code", ct: ctJSON, body: `{` + good + `}`, status: 400, code: "invalid_request"},
		{name: "empty code", ct: ctForm, body: form("grant_type", "authorization_code", "client_id", "demo-app", "client_secret", "demo-secret", "code", ""), status: 400, code: "invalid_request"},
		{name: "unknown client", ct: ctJSON, body: `{"grant_type":"authorization_code","client_id":"nobody","client_secret":"demo-secret","code":"guest-user"}`, status: 401, code: "invalid_client"},
		{name: "wrong secret", ct: ctJSON, body: `{"grant_type":"authorization_code","client_id":"demo-app","client_secret":"other-secret","code":"guest-user"}`, status: 401, code: "invalid_client"},
		{name: "missing secret", ct: ctJSON, body: `{"grant_type":"authorization_code","client_id":"demo-app","code":"guest-user"}`, status: 401, code: "invalid_client"},
		{name: "secret prefix", ct: ctForm, body: form("grant_type", "authorization_code", "client_id", "demo-app", "client_secret", "demo-secre", "code", "guest-user"), status: 401, code: "invalid_client"},
		{name: "Basic wrong secret", ct: ctForm, body: form("grant_type", "authorization_code", "code", "guest-user"), headers: []string{"Authorization", basicAuth("demo-app", "nope")}, status: 401, code: "invalid_client", challenge: "Basic"},
		{name: "Basic unknown client", ct: ctForm, body: form("grant_type", "authorization_code", "code", "guest-user"), headers: []string{"Authorization", basicAuth("nobody", "demo-secret")}, status: 401, code: "invalid_client", challenge: "Basic"},
		// Basic plus the same body secret is accepted (Casdoor's SDKs send both);
		// a different one is a failed authentication.
		{name: "Basic plus another body secret", ct: ctForm, body: form("grant_type", "authorization_code", "client_secret", "other-secret", "code", "guest-user"), headers: []string{"Authorization", basicAuth("demo-app", "demo-secret")}, status: 401, code: "invalid_client", challenge: "Basic"},
		{name: "Basic with another body client_id", ct: ctJSON, body: `{"grant_type":"authorization_code","client_id":"other-app","code":"guest-user"}`, headers: []string{"Authorization", basicAuth("demo-app", "demo-secret")}, status: 400, code: "invalid_request"},
		{name: "repeated form parameter", ct: ctForm, body: form("grant_type", "authorization_code", "client_id", "demo-app", "client_secret", "demo-secret", "code", "guest-user", "code", "guest-user"), status: 400, code: "invalid_request"},
		{name: "repeated client_id", ct: ctForm, body: form("grant_type", "authorization_code", "client_id", "demo-app", "client_id", "other-app", "client_secret", "demo-secret", "code", "guest-user"), status: 400, code: "invalid_request"},
		{name: "unsupported grant", ct: ctJSON, body: `{"grant_type":"client_credentials","client_id":"demo-app","client_secret":"demo-secret","code":"guest-user"}`, status: 400, code: "unsupported_grant_type"},
		{name: "implicit grant", ct: ctForm, body: form("grant_type", "implicit", "client_id", "demo-app", "client_secret", "demo-secret"), status: 400, code: "unsupported_grant_type"},
		{name: "other code", ct: ctJSON, body: `{` + good + `,"code":"abc123"}`, status: 400, code: "invalid_grant"},
		{name: "code in another case", ct: ctJSON, body: `{` + good + `,"code":"Guest-User"}`, status: 400, code: "invalid_grant"},
		{name: "code with spaces", ct: ctForm, body: form("grant_type", "authorization_code", "client_id", "demo-app", "client_secret", "demo-secret", "code", " guest-user "), status: 400, code: "invalid_grant"},
	}
	// The group returns once its parallel cases are done.
	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				method := c.method
				if method == "" {
					method = http.MethodPost
				}
				headers := c.headers
				if c.ct != "" {
					headers = append([]string{"Content-Type", c.ct}, headers...)
				}
				for _, path := range []string{"/oauth/token", "/api/login/oauth/access_token"} {
					resp := s.do(method, path, bytes.NewReader([]byte(c.body)), headers...)
					if resp.Status != c.status {
						t.Fatalf("%s: status %d, want %d: %s", path, resp.Status, c.status, resp.Body)
					}
					if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
						t.Fatalf("%s: Content-Type %q", path, ct)
					}
					if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
						t.Fatalf("%s: Cache-Control %q", path, cc)
					}
					body := resp.JSON(t)
					desc, _ := body["error_description"].(string)
					if body["error"] != c.code || desc == "" {
						t.Fatalf("%s: body %s, want error %q with a description", path, resp.Body, c.code)
					}
					if _, ok := body["access_token"]; ok {
						t.Fatalf("%s: refused request got a token: %s", path, resp.Body)
					}
					if c.status == 405 && resp.Header.Get("Allow") != "POST" {
						t.Fatalf("%s: Allow = %q, want POST", path, resp.Header.Get("Allow"))
					}
					if got := resp.Header.Get("WWW-Authenticate"); c.challenge != "" && !strings.HasPrefix(got, c.challenge) {
						t.Fatalf("%s: WWW-Authenticate %q, want %s", path, got, c.challenge)
					}
				}
			})
		}
	})
	// One good request as a control, then no other user may exist.
	ts := s.createGuest()
	_, c := jwtParts(t, ts.AccessToken)
	s.Stop()
	users := storedUsers(t, s.DB)
	if len(users) != 1 || users[0].ID != c["sub"] {
		t.Fatalf("store holds %d users after the refused requests, want only the control guest %v: %+v", len(users), c["sub"], users)
	}
	if strings.Contains(s.Logs(), "panic") {
		t.Fatalf("caddy logged a panic:\n%s", s.Logs())
	}
}

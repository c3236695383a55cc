package tokens_test

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	_ "github.com/guestauth/caddy-guestauth/storage/bolt" // the default kind of storage.Open
)

// memKeys is an in-memory tokens.KeyStore.
type memKeys struct {
	mu      sync.Mutex
	keys    []model.SigningKey
	keyLock sync.Mutex
}

func (m *memKeys) SigningKeys(context.Context) ([]model.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]model.SigningKey(nil), m.keys...), nil
}

func (m *memKeys) AddSigningKey(_ context.Context, k model.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = append(m.keys, k)
	return nil
}

func (m *memKeys) DeleteSigningKey(_ context.Context, kid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = slices.DeleteFunc(m.keys, func(k model.SigningKey) bool { return k.KID == kid })
	return nil
}

func (m *memKeys) SetSigningKeyCert(_ context.Context, kid string, cert []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.keys {
		if m.keys[i].KID == kid {
			if len(m.keys[i].Cert) > 0 {
				return model.ErrExists
			}
			m.keys[i].Cert = cert
			return nil
		}
	}
	return model.ErrNotFound
}

func (m *memKeys) LockSigningKeys(ctx context.Context, fn func(context.Context) error) error {
	m.keyLock.Lock()
	defer m.keyLock.Unlock()
	return fn(ctx)
}

const issuer = "https://auth.example.com"

var now0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

func newKeyring(t *testing.T, algs ...jwa.SignatureAlgorithm) *tokens.Keyring {
	t.Helper()
	k, err := tokens.LoadKeyring(context.Background(), &memKeys{})
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range algs {
		if err := k.EnsureSigner(context.Background(), alg); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func grant(alg jwa.SignatureAlgorithm) tokens.Grant {
	return tokens.Grant{Alg: alg, Issuer: issuer, ClientID: "app", Scope: "openid", Now: now0, AccessTTL: time.Hour, IDTTL: time.Hour}
}

var subject = tokens.Subject{UserID: "user-1", Name: "guest_user-1", Tag: "guest-user", Anonymous: true, SessionID: "sess-1", AuthTime: now0.Add(-time.Minute)}

func mint(t *testing.T, k *tokens.Keyring, g tokens.Grant, sub tokens.Subject) *tokens.Minted {
	t.Helper()
	m, err := k.Mint(g, sub)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// verifierAt verifies as if the time were at.
func verifierAt(k *tokens.Keyring, at time.Time) *tokens.Verifier {
	return &tokens.Verifier{Keys: k, Skew: 30 * time.Second, Now: func() time.Time { return at }, Audiences: []string{"app"}}
}

// wantInvalid fails unless err is an *InvalidError (with reason, if given).
func wantInvalid(t *testing.T, c *tokens.AccessClaims, err error, reason string) {
	t.Helper()
	var inv *tokens.InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("token accepted or wrong error: claims=%+v err=%v", c, err)
	}
	if c != nil {
		t.Fatalf("claims returned with an error: %+v", c)
	}
	if reason != "" && inv.Reason != reason {
		t.Fatalf("reason = %q, want %q", inv.Reason, reason)
	}
}

var b64 = base64.RawURLEncoding

func parts(t *testing.T, tok string) (hdr, payload map[string]any, sig string) {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("not a JWS compact token: %q", tok)
	}
	for i, dst := range []*map[string]any{&hdr, &payload} {
		raw, err := b64.DecodeString(p[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			t.Fatal(err)
		}
	}
	return hdr, payload, p[2]
}

func encodeJSON(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(raw)
}

func TestMintAndVerifyEachAlgorithm(t *testing.T) {
	t.Parallel()
	for _, alg := range tokens.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			t.Parallel()
			k := newKeyring(t, alg)
			g := grant(alg)
			g.Owner = "acme"
			m := mint(t, k, g, subject)
			if m.ExpiresIn != 3600 || m.JTI == "" {
				t.Fatalf("Minted = %+v", m)
			}
			hdr, ac, _ := parts(t, m.AccessToken)
			if hdr["alg"] != string(alg) || hdr["typ"] != tokens.TypeAccess || hdr["kid"] == "" {
				t.Fatalf("access token header = %v", hdr)
			}
			// Casdoor's SDKs read the user from the access token.
			if ac["owner"] != "acme" || ac["id"] != "user-1" || ac["name"] != "guest_user-1" {
				t.Fatalf("access token claims = %v", ac)
			}
			idHdr, idClaims, _ := parts(t, m.IDToken)
			if idHdr["alg"] != string(alg) || idHdr["typ"] != tokens.TypeID || idHdr["kid"] != hdr["kid"] || len(idHdr) != 3 {
				t.Fatalf("ID token header = %v", idHdr)
			}
			wantID := map[string]any{
				"iss": issuer, "sub": "user-1", "aud": []any{"app"}, "iat": float64(now0.Unix()),
				"exp": float64(now0.Add(time.Hour).Unix()), "auth_time": float64(subject.AuthTime.Unix()),
				"sid": "sess-1", "name": "guest_user-1", "preferred_username": "guest_user-1", "tag": "guest-user", "is_anonymous": true,
				"owner": "acme", "id": "user-1", "https://authgear.com/claims/user/is_anonymous": true,
				"https://authgear.com/claims/user/is_verified": false, "https://authgear.com/claims/user/can_reauthenticate": false,
			}
			if !reflect.DeepEqual(idClaims, wantID) {
				t.Fatalf("ID token claims = %v\nwant %v", idClaims, wantID)
			}

			c, err := verifierAt(k, now0.Add(time.Minute)).Verify(m.AccessToken, issuer)
			if err != nil {
				t.Fatal(err)
			}
			want := tokens.AccessClaims{
				Issuer: issuer, Audience: []string{"app"}, Subject: "user-1", ClientID: "app", SessionID: "sess-1", Name: "guest_user-1",
				Tag: "guest-user", Scope: "openid", JTI: m.JTI, Anonymous: true, IssuedAt: now0, ExpiresAt: now0.Add(time.Hour),
			}
			if !c.IssuedAt.Equal(want.IssuedAt) || !c.ExpiresAt.Equal(want.ExpiresAt) {
				t.Fatalf("times: iat %v exp %v", c.IssuedAt, c.ExpiresAt)
			}
			c.IssuedAt, c.ExpiresAt = want.IssuedAt, want.ExpiresAt
			if !reflect.DeepEqual(*c, want) {
				t.Fatalf("claims = %+v\nwant     %+v", *c, want)
			}

			// The JWKS verifies both tokens with a standard library, and
			// holds public keys only.
			set, err := jwk.Parse(k.JWKS())
			if err != nil {
				t.Fatal(err)
			}
			if set.Len() != 1 {
				t.Fatalf("JWKS has %d keys, want 1", set.Len())
			}
			key, _ := set.Key(0)
			if priv, err := jwk.IsPrivateKey(key); err != nil || priv {
				t.Fatalf("JWKS key is private (%v, %v)", priv, err)
			}
			if key.KeyID() != hdr["kid"] || key.Algorithm().String() != string(alg) || key.KeyUsage() != "sig" {
				t.Fatalf("JWKS key kid=%q alg=%q use=%q", key.KeyID(), key.Algorithm(), key.KeyUsage())
			}
			for _, tok := range []string{m.AccessToken, m.IDToken} {
				if _, err := jwt.ParseString(tok, jwt.WithKeySet(set), jwt.WithValidate(true), jwt.WithClock(jwt.ClockFunc(func() time.Time { return now0 })), jwt.WithIssuer(issuer), jwt.WithAudience("app")); err != nil {
					t.Fatalf("jwx rejects our token: %v", err)
				}
			}
		})
	}
}

func TestKeyringPersistsKeys(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.db")
	st, err := storage.Open(context.Background(), storage.Config{Location: path})
	if err != nil {
		t.Fatal(err)
	}
	k, err := tokens.LoadKeyring(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.EnsureSigner(context.Background(), jwa.ES256); err != nil {
		t.Fatal(err)
	}
	m := mint(t, k, grant(jwa.ES256), subject)
	st.Close()

	st, err = storage.Open(context.Background(), storage.Config{Location: path})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k2, err := tokens.LoadKeyring(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if err := k2.EnsureSigner(context.Background(), jwa.ES256); err != nil {
		t.Fatal(err)
	}
	if keys, _ := st.SigningKeys(context.Background()); len(keys) != 1 {
		t.Fatalf("EnsureSigner made a new key although one was stored: %d keys", len(keys))
	}
	if _, err := verifierAt(k2, now0).Verify(m.AccessToken, issuer); err != nil {
		t.Fatalf("token from before the reopen: %v", err)
	}
	if string(k2.JWKS()) != string(k.JWKS()) {
		t.Fatalf("JWKS changed across reopen")
	}
}

func TestMintWithoutSignerFails(t *testing.T) {
	t.Parallel()
	k := newKeyring(t, jwa.RS256)
	if _, err := k.Mint(grant(jwa.ES256), subject); err == nil {
		t.Fatal("minted with an algorithm that has no key")
	}
	if _, err := tokens.ParseAlgorithm("HS256"); err == nil {
		t.Fatal("HS256 accepted as a signing algorithm")
	}
	if _, err := tokens.ParseAlgorithm("none"); err == nil {
		t.Fatal("none accepted as a signing algorithm")
	}
}

func TestVerifyRefusals(t *testing.T) {
	t.Parallel()
	k := newKeyring(t, jwa.RS256, jwa.ES256)
	m := mint(t, k, grant(jwa.RS256), subject)
	v := verifierAt(k, now0.Add(time.Minute))
	if _, err := v.Verify(m.AccessToken, issuer); err != nil {
		t.Fatalf("control token refused: %v", err)
	}
	hdr, payload, sig := parts(t, m.AccessToken)
	p := strings.Split(m.AccessToken, ".")

	t.Run("alg none", func(t *testing.T) {
		h := map[string]any{"alg": "none", "typ": tokens.TypeAccess, "kid": hdr["kid"]}
		for _, tok := range []string{
			encodeJSON(t, h) + "." + p[1] + ".",
			encodeJSON(t, h) + "." + p[1] + "." + sig,
		} {
			c, err := v.Verify(tok, issuer)
			wantInvalid(t, c, err, "")
		}
	})

	t.Run("HS256 with the RSA public key", func(t *testing.T) {
		set, err := jwk.Parse(k.JWKS())
		if err != nil {
			t.Fatal(err)
		}
		var pub *rsa.PublicKey
		for i := 0; i < set.Len(); i++ {
			key, _ := set.Key(i)
			if key.KeyID() == hdr["kid"] {
				var raw any
				if err := key.Raw(&raw); err != nil {
					t.Fatal(err)
				}
				pub = raw.(*rsa.PublicKey)
			}
		}
		if pub == nil {
			t.Fatal("RSA key not in JWKS")
		}
		pkix, _ := x509.MarshalPKIXPublicKey(pub)
		secrets := map[string][]byte{
			"PKIX PEM":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
			"PKCS1 PEM": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)}),
			"DER":       pkix,
			"JWKS":      k.JWKS(),
			"empty":     {},
		}
		for name, secret := range secrets {
			h := map[string]any{"alg": "HS256", "typ": tokens.TypeAccess, "kid": hdr["kid"]}
			input := encodeJSON(t, h) + "." + p[1]
			mac := hmac.New(sha256.New, secret)
			mac.Write([]byte(input))
			tok := input + "." + b64.EncodeToString(mac.Sum(nil))
			c, err := v.Verify(tok, issuer)
			if err == nil {
				t.Fatalf("HS256 token keyed with %s accepted", name)
			}
			wantInvalid(t, c, err, tokens.ReasonSignature)
		}
	})

	t.Run("tampered payload", func(t *testing.T) {
		for claim, val := range map[string]any{"sub": "user-2", "tag": "normal-user", "is_anonymous": false, "exp": payload["exp"].(float64) + 3600} {
			changed := map[string]any{}
			for k, v := range payload {
				changed[k] = v
			}
			changed[claim] = val
			tok := p[0] + "." + encodeJSON(t, changed) + "." + p[2]
			c, err := v.Verify(tok, issuer)
			wantInvalid(t, c, err, tokens.ReasonSignature)
		}
	})

	t.Run("tampered signature", func(t *testing.T) {
		raw, _ := b64.DecodeString(sig)
		raw[len(raw)/2] ^= 1
		c, err := v.Verify(p[0]+"."+p[1]+"."+b64.EncodeToString(raw), issuer)
		wantInvalid(t, c, err, tokens.ReasonSignature)
		c, err = v.Verify(p[0]+"."+p[1]+".", issuer)
		wantInvalid(t, c, err, "")
	})

	t.Run("expired", func(t *testing.T) {
		// Within the skew it still passes; past it, it is refused.
		if _, err := verifierAt(k, now0.Add(time.Hour+20*time.Second)).Verify(m.AccessToken, issuer); err != nil {
			t.Fatalf("refused within clock skew: %v", err)
		}
		c, err := verifierAt(k, now0.Add(time.Hour+31*time.Second)).Verify(m.AccessToken, issuer)
		wantInvalid(t, c, err, tokens.ReasonExpired)
	})

	t.Run("not yet valid", func(t *testing.T) {
		c, err := verifierAt(k, now0.Add(-5*time.Minute)).Verify(m.AccessToken, issuer)
		wantInvalid(t, c, err, tokens.ReasonClaims)
	})

	t.Run("wrong issuer", func(t *testing.T) {
		for _, iss := range []string{"https://evil.example.com", issuer + "/", "http://auth.example.com", ""} {
			c, err := v.Verify(m.AccessToken, iss)
			wantInvalid(t, c, err, tokens.ReasonIssuer)
		}
	})

	t.Run("unknown kid", func(t *testing.T) {
		// Signed by another keyring's key: its kid is unknown here.
		other := newKeyring(t, jwa.RS256)
		c, err := v.Verify(mint(t, other, grant(jwa.RS256), subject).AccessToken, issuer)
		wantInvalid(t, c, err, tokens.ReasonSignature)
		// Our own token with its kid rewritten.
		h := map[string]any{}
		for k, v := range hdr {
			h[k] = v
		}
		h["kid"] = "nope"
		c, err = v.Verify(encodeJSON(t, h)+"."+p[1]+"."+p[2], issuer)
		wantInvalid(t, c, err, tokens.ReasonSignature)
		delete(h, "kid")
		c, err = v.Verify(encodeJSON(t, h)+"."+p[1]+"."+p[2], issuer)
		wantInvalid(t, c, err, tokens.ReasonSignature)
	})

	t.Run("kid of another algorithm", func(t *testing.T) {
		// An ES256 token whose header claims RS256 is refused before any crypto.
		es := mint(t, k, grant(jwa.ES256), subject)
		esHdr, _, _ := parts(t, es.AccessToken)
		esHdr["alg"] = "RS256"
		ep := strings.Split(es.AccessToken, ".")
		c, err := v.Verify(encodeJSON(t, esHdr)+"."+ep[1]+"."+ep[2], issuer)
		wantInvalid(t, c, err, tokens.ReasonSignature)
	})

	t.Run("ID token as access token", func(t *testing.T) {
		c, err := v.Verify(m.IDToken, issuer)
		wantInvalid(t, c, err, tokens.ReasonSignature)
	})

	t.Run("oversized", func(t *testing.T) {
		big := subject
		big.Name = strings.Repeat("x", tokens.MaxTokenSize)
		tok := mint(t, k, grant(jwa.RS256), big).AccessToken
		c, err := v.Verify(tok, issuer)
		wantInvalid(t, c, err, tokens.ReasonMalformed)
	})

	t.Run("garbage", func(t *testing.T) {
		for _, tok := range []string{"", "abc", "a.b", "a.b.c", "a.b.c.d", p[0] + "." + p[1], "....", "eyJ.eyJ.x"} {
			c, err := v.Verify(tok, issuer)
			wantInvalid(t, c, err, "")
		}
	})

	t.Run("missing claims", func(t *testing.T) {
		// A validly signed access token without sid/tag is refused.
		g := grant(jwa.RS256)
		sub := subject
		sub.SessionID = ""
		c, err := v.Verify(mint(t, k, g, sub).AccessToken, issuer)
		wantInvalid(t, c, err, tokens.ReasonClaims)
	})
}

func TestVerifierCache(t *testing.T) {
	t.Parallel()
	k := newKeyring(t, jwa.EdDSA)
	now := now0
	clock := func() time.Time { return now }
	cache := tokens.NewCache(100)
	v := &tokens.Verifier{Keys: k, Skew: 30 * time.Second, Now: clock, Cache: cache, Audiences: []string{"app"}}
	m := mint(t, k, grant(jwa.EdDSA), subject)

	c1, err := v.Verify(m.AccessToken, issuer)
	if err != nil {
		t.Fatal(err)
	}
	if cache.Len() != 1 {
		t.Fatalf("cache len = %d after one verification, want 1", cache.Len())
	}
	c2, err := v.Verify(m.AccessToken, issuer)
	if err != nil {
		t.Fatal(err)
	}
	if c1 != c2 {
		t.Fatal("a cache hit did not return the cached claims")
	}
	// Refused tokens are not cached.
	v.Verify(m.IDToken, issuer)
	v.Verify(m.AccessToken+"x", issuer)
	if cache.Len() != 1 {
		t.Fatalf("cache len = %d after refused tokens, want 1", cache.Len())
	}

	// A cache hit still checks the issuer, the audience and the expiry.
	c, err := v.Verify(m.AccessToken, "https://other.example.com")
	wantInvalid(t, c, err, tokens.ReasonIssuer)
	other := &tokens.Verifier{Keys: k, Skew: 30 * time.Second, Now: clock, Cache: cache, Audiences: []string{"other-app"}}
	c, err = other.Verify(m.AccessToken, issuer)
	wantInvalid(t, c, err, tokens.ReasonAudience)
	now = now0.Add(time.Hour + 31*time.Second)
	c, err = v.Verify(m.AccessToken, issuer)
	wantInvalid(t, c, err, tokens.ReasonExpired)

	// The cache is keyed by the whole token: a Put under some string is
	// what a hit returns, without signature checks.
	now = now0
	fake := &tokens.AccessClaims{Issuer: issuer, Audience: []string{"app"}, Subject: "cached", ExpiresAt: now0.Add(time.Minute)}
	cache.Put("not-a-jwt", fake)
	if got, err := v.Verify("not-a-jwt", issuer); err != nil || got != fake {
		t.Fatalf("cache hit = %v, %v", got, err)
	}
}

// A token is accepted only by a verifier serving its client (aud), so a
// token of a client that another site configures fails here even when both
// sites share the keys and the issuer.
func TestVerifyAudience(t *testing.T) {
	t.Parallel()
	k := newKeyring(t, jwa.ES256)
	m := mint(t, k, grant(jwa.ES256), subject) // aud ["app"]
	for _, tc := range []struct {
		audiences []string
		ok        bool
	}{
		{[]string{"app"}, true},
		{[]string{"web", "app"}, true},
		{[]string{"other-app"}, false},
		{[]string{"App"}, false},
		{[]string{""}, false},
		{nil, false}, // a site with no clients accepts no token
	} {
		v := verifierAt(k, now0)
		v.Audiences = tc.audiences
		c, err := v.Verify(m.AccessToken, issuer)
		if tc.ok {
			if err != nil || !reflect.DeepEqual(c.Audience, []string{"app"}) {
				t.Errorf("audiences %q: %v, %v", tc.audiences, c, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("audiences %q: a token for %q was accepted", tc.audiences, "app")
			continue
		}
		wantInvalid(t, c, err, tokens.ReasonAudience)
	}
}

func TestCacheStaysBounded(t *testing.T) {
	t.Parallel()
	cache := tokens.NewCache(16)
	for i := 0; i < 1000; i++ {
		cache.Put(fmt.Sprint("tok", i), &tokens.AccessClaims{ExpiresAt: now0.Add(time.Duration(i%3) * time.Minute)})
		if n := cache.Len(); n > 16 {
			t.Fatalf("cache grew to %d entries (max 16) after %d puts", n, i+1)
		}
	}
	if _, ok := cache.Get("tok999"); !ok {
		t.Fatal("the newest entry is missing")
	}
	if tokens.NewCache(0) != nil {
		t.Fatal("NewCache(0) must disable the cache")
	}
	// A verifier with no cache works.
	k := newKeyring(t, jwa.ES256)
	v := verifierAt(k, now0)
	if _, err := v.Verify(mint(t, k, grant(jwa.ES256), subject).AccessToken, issuer); err != nil {
		t.Fatal(err)
	}
}

// Protected headers are encoded once per key and token type: later tokens
// keep each type's own header, and a rotated key's tokens name the new key.
func TestMintHeadersPerKeyAndType(t *testing.T) {
	t.Parallel()
	k := newKeyring(t, jwa.ES256)
	var kids []any
	for round := range 3 {
		if round == 2 {
			if _, err := k.Rotate(context.Background(), jwa.ES256); err != nil {
				t.Fatal(err)
			}
		}
		m := mint(t, k, grant(jwa.ES256), subject)
		hdr, _, _ := parts(t, m.AccessToken)
		idHdr, _, _ := parts(t, m.IDToken)
		if hdr["typ"] != tokens.TypeAccess || idHdr["typ"] != tokens.TypeID || hdr["kid"] != idHdr["kid"] || hdr["kid"] != k.SignerKID(jwa.ES256) {
			t.Fatalf("round %d: headers %v and %v, signer %s", round, hdr, idHdr, k.SignerKID(jwa.ES256))
		}
		if _, err := verifierAt(k, now0).Verify(m.AccessToken, issuer); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		kids = append(kids, hdr["kid"])
	}
	if kids[0] != kids[1] || kids[1] == kids[2] {
		t.Fatalf("kids over the rounds (rotation before the last): %v", kids)
	}
}

// The ID token carries email and email_verified with scope email only;
// Authgear's is_verified says whether the address is verified, whatever
// the scope. The access token never carries the address.
func TestIDTokenEmailClaims(t *testing.T) {
	t.Parallel()
	k := newKeyring(t, jwa.ES256)
	sub := subject
	sub.Email, sub.EmailVerified = "alice@example.test", true
	for _, c := range []struct {
		scope    string
		verified bool
		email    any
	}{
		{"openid", true, nil},
		{"openid email", true, "alice@example.test"},
		{"openid email", false, "alice@example.test"},
	} {
		g := grant(jwa.ES256)
		g.Scope = c.scope
		s := sub
		s.EmailVerified = c.verified
		m := mint(t, k, g, s)
		_, id, _ := parts(t, m.IDToken)
		if id["email"] != c.email {
			t.Fatalf("%q: email = %v, want %v", c.scope, id["email"], c.email)
		}
		if c.email != nil && id["email_verified"] != c.verified || c.email == nil && id["email_verified"] != nil {
			t.Fatalf("%q: email_verified = %v", c.scope, id["email_verified"])
		}
		if id["https://authgear.com/claims/user/is_verified"] != c.verified {
			t.Fatalf("%q: is_verified = %v", c.scope, id["https://authgear.com/claims/user/is_verified"])
		}
		_, ac, _ := parts(t, m.AccessToken)
		if _, ok := ac["email"]; ok {
			t.Fatalf("%q: the access token carries the address", c.scope)
		}
	}
}

package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// subjectOf rebuilds the tokens.Subject an access token was minted for.
func subjectOf(t *testing.T, accessToken string) tokens.Subject {
	t.Helper()
	_, c := jwtParts(t, accessToken)
	return tokens.Subject{
		UserID: c["sub"].(string), Name: c["name"].(string), Tag: c["tag"].(string),
		Anonymous: c["is_anonymous"] == true, SessionID: c["sid"].(string), AuthTime: time.Now(),
	}
}

func TestTokenAttacksRefused(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "") // require none: a refused token must not pass as anonymous either
	victim := s.createGuest()
	attacker := s.createGuest()
	_, vc := jwtParts(t, victim.AccessToken)
	hdr, _ := jwtParts(t, victim.AccessToken)
	vp := strings.Split(victim.AccessToken, ".")
	ap := strings.Split(attacker.AccessToken, ".")

	attacks := map[string]string{}

	// alg none, with no signature and with the real one.
	none := b64JSON(t, map[string]any{"alg": "none", "typ": "at+jwt", "kid": hdr["kid"]})
	attacks["alg none, empty signature"] = none + "." + vp[1] + "."
	attacks["alg none, real signature"] = none + "." + vp[1] + "." + vp[2]
	attacks["alg None"] = b64JSON(t, map[string]any{"alg": "None", "typ": "at+jwt"}) + "." + vp[1] + "."

	// HS256 keyed with the server's RSA public key, in each form an
	// attacker might try, taken from the published JWKS.
	_, set, rawJWKS := s.discover()
	var pub *rsa.PublicKey
	for i := 0; i < set.Len(); i++ {
		k, _ := set.Key(i)
		var raw any
		if err := k.Raw(&raw); err == nil {
			if rk, ok := raw.(*rsa.PublicKey); ok && k.KeyID() == hdr["kid"] {
				pub = rk
			}
		}
	}
	if pub == nil {
		t.Fatalf("the token's RSA key %v is not in the JWKS", hdr["kid"])
	}
	pkix, _ := x509.MarshalPKIXPublicKey(pub)
	hsKeys := map[string][]byte{
		"PKIX PEM":  pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
		"PKCS1 PEM": pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub)}),
		"DER":       pkix,
		"JWKS":      rawJWKS,
		"modulus":   pub.N.Bytes(),
	}
	for name, key := range hsKeys {
		input := b64JSON(t, map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": hdr["kid"]}) + "." + vp[1]
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(input))
		attacks["HS256 with "+name] = input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}

	// The attacker's own token, rewritten to name the victim.
	raw, _ := base64.RawURLEncoding.DecodeString(ap[1])
	var ac map[string]any
	json.Unmarshal(raw, &ac)
	ac["sub"], ac["name"], ac["sid"] = vc["sub"], vc["name"], vc["sid"]
	attacks["tampered payload (sub)"] = ap[0] + "." + b64JSON(t, ac) + "." + ap[2]
	ac = map[string]any{}
	json.Unmarshal(raw, &ac)
	ac["tag"], ac["is_anonymous"] = "normal-user", false
	attacks["tampered payload (tag)"] = ap[0] + "." + b64JSON(t, ac) + "." + ap[2]

	sig, _ := base64.RawURLEncoding.DecodeString(vp[2])
	sig[0] ^= 0x80
	attacks["tampered signature"] = vp[0] + "." + vp[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	attacks["signature of another token"] = vp[0] + "." + vp[1] + "." + ap[2]
	attacks["ID token"] = victim.IDToken
	attacks["refresh token"] = victim.RefreshToken
	attacks["oversized"] = vp[0] + "." + strings.Repeat("A", 10<<10) + "." + vp[2]

	// A token signed by a key this server never had (same alg, own kid).
	other, err := bolt.Open(filepath.Join(t.TempDir(), "other.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	otherKeys, err := tokens.LoadKeyring(context.Background(), other)
	if err == nil {
		err = otherKeys.EnsureSigner(context.Background(), jwa.RS256)
	}
	if err != nil {
		t.Fatal(err)
	}
	m, err := otherKeys.Mint(tokens.Grant{Alg: jwa.RS256, Issuer: s.Base, ClientID: "demo-app", Scope: "openid", Now: time.Now(), AccessTTL: time.Hour, IDTTL: time.Hour}, subjectOf(t, victim.AccessToken))
	other.Close()
	if err != nil {
		t.Fatal(err)
	}
	attacks["foreign key"] = m.AccessToken

	hits := s.Upstream.Hits()
	for name, tok := range attacks {
		resp := s.get("/app", tok)
		if resp.Status != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401: %s", name, resp.Status, resp.Body)
			continue
		}
		wantRefused(t, s, resp, hits)
	}

	// Tokens signed with the server's own key but expired, or for another
	// issuer: mint them from its bbolt file while it is stopped. This also
	// shows a restart keeps the keys.
	s.Stop()
	st, err := bolt.Open(s.DB, bolt.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tokens.LoadKeyring(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	sub := subjectOf(t, victim.AccessToken)
	grant := tokens.Grant{Alg: jwa.RS256, Issuer: s.Base, ClientID: "demo-app", Scope: "openid", Now: time.Now(), AccessTTL: time.Hour, IDTTL: time.Hour}
	control, err1 := keys.Mint(grant, sub)
	expiredGrant := grant
	expiredGrant.Now = time.Now().Add(-2 * time.Hour)
	expired, err2 := keys.Mint(expiredGrant, sub)
	foreignGrant := grant
	foreignGrant.Issuer = "https://evil.example.com"
	foreign, err3 := keys.Mint(foreignGrant, sub)
	st.Close()
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Start(s.siteConfig(""))

	hits = s.Upstream.Hits()
	resp := s.get("/app", expired.AccessToken)
	wantRefused(t, s, resp, hits)
	if desc := resp.JSON(t)["error_description"].(string); !strings.Contains(strings.ToLower(desc), "expired") {
		t.Fatalf("expired token: error_description %q does not say it expired", desc)
	}
	wantRefused(t, s, s.get("/app", foreign.AccessToken), hits)

	// Same key, right issuer, fresh: accepted, so the refusals above were
	// for expiry and issuer, not for how the tokens were made.
	for _, tok := range []string{control.AccessToken, victim.AccessToken} {
		resp := s.get("/app", tok)
		if resp.Status != http.StatusOK || seen(t, resp).Get("X-Auth-User-Id") != vc["sub"] {
			t.Fatalf("valid token after restart: %d %s", resp.Status, resp.Body)
		}
	}
}

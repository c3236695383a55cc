package tokens_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/jwstest"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// fixedKey is a KeySource of one key, counting its calls and noting what
// it was asked.
type fixedKey struct {
	key   tokens.Key
	err   error
	calls int
	kid   string
	jwk   string
}

func (f *fixedKey) VerificationKey(kid string, _ jwa.SignatureAlgorithm, jwk []byte) (tokens.Key, error) {
	f.calls++
	f.kid, f.jwk = kid, string(jwk)
	return f.key, f.err
}

type testClaims struct {
	tokens.RegisteredClaims
	Who string `json:"who"`
}

// TestVerifyJWTRules: VerifyJWT's own rules, with a key source and rules
// of the test's choosing (a device's key, a short lifetime), as the
// key-pair grant uses it.
func TestVerifyJWTRules(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	rules := &tokens.Rules{Typ: "test+jwt", Algs: []jwa.SignatureAlgorithm{jwa.ES256, jwa.RS256}, Skew: 30 * time.Second, MaxLifetime: 5 * time.Minute}
	hdr := func(alg string, extra string) string {
		return fmt.Sprintf(`{"alg":%q,"kid":"key-1","typ":"test+jwt"%s}`, alg, extra)
	}
	iat := now.Unix()
	pay := func(iatOff, expOff int64, extra string) string {
		return fmt.Sprintf(`{"iat":%d,"exp":%d,"who":"me"%s}`, iat+iatOff, iat+expOff, extra)
	}
	ecKey := tokens.Key{Alg: jwa.ES256, Public: &ec.PublicKey}
	sign := func(h, p string, alg jwa.SignatureAlgorithm, key any) string {
		tok, err := jwstest.CompactJSON(h, p, alg, key)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := sign(hdr("ES256", ""), pay(0, 60, ""), jwa.ES256, ec)
	rows := []struct {
		name    string
		tok     string
		key     tokens.Key
		reason  string // "" = accepted
		detail  string
		keyCall bool // the key source is asked
	}{
		{"control", good, ecKey, "", "", true},
		{"RS256 key", sign(hdr("RS256", ""), pay(0, 60, ""), jwa.RS256, rs), tokens.Key{Alg: jwa.RS256, Public: &rs.PublicKey}, "", "", true},
		{"fractional times", sign(hdr("ES256", ""), `{"iat":`+fmt.Sprint(iat)+`.25,"exp":`+fmt.Sprint(iat+60)+`.5,"who":"me"}`, jwa.ES256, ec), ecKey, "", "", true},
		{"alg none", sign(hdr("none", ""), pay(0, 60, ""), jwa.NoSignature, nil), ecKey, tokens.ReasonSignature, "header alg must be ES256 or RS256", false},
		{"alg outside the rules", sign(hdr("EdDSA", ""), pay(0, 60, ""), jwa.EdDSA, ed), tokens.Key{Alg: jwa.EdDSA, Public: ed.Public()}, tokens.ReasonSignature, "header alg must be", false},
		{"alg HS256", sign(hdr("HS256", ""), pay(0, 60, ""), jwa.HS256, []byte("0123456789abcdef0123456789abcdef")), ecKey, tokens.ReasonSignature, "header alg must be", false},
		{"alg not the key's", sign(hdr("RS256", ""), pay(0, 60, ""), jwa.RS256, rs), ecKey, tokens.ReasonSignature, "the key's algorithm", true},
		{"key of another type than its alg", sign(hdr("RS256", ""), pay(0, 60, ""), jwa.RS256, rs), tokens.Key{Alg: jwa.RS256, Public: &ec.PublicKey}, tokens.ReasonSignature, "signature does not verify", true},
		{"another key", good, tokens.Key{Alg: jwa.ES256, Public: &mustEC(t).PublicKey}, tokens.ReasonSignature, "signature does not verify", true},
		{"typ of another kind", sign(`{"alg":"ES256","kid":"key-1","typ":"at+jwt"}`, pay(0, 60, ""), jwa.ES256, ec), ecKey, tokens.ReasonSignature, `header typ must be "test+jwt"`, false},
		{"typ in other case", sign(`{"alg":"ES256","kid":"key-1","typ":"TEST+JWT"}`, pay(0, 60, ""), jwa.ES256, ec), ecKey, tokens.ReasonSignature, "header typ must be", false},
		{"crit", sign(hdr("ES256", `,"crit":["exp"]`), pay(0, 60, ""), jwa.ES256, ec), ecKey, tokens.ReasonSignature, "crit or b64", false},
		{"b64", sign(hdr("ES256", `,"b64":true`), pay(0, 60, ""), jwa.ES256, ec), ecKey, tokens.ReasonSignature, "crit or b64", false},
		{"header duplicate", sign(hdr("ES256", `,"kid":"key-2"`), pay(0, 60, ""), jwa.ES256, ec), ecKey, tokens.ReasonMalformed, "header has a duplicate member name", false},
		{"header case-folded", sign(hdr("ES256", `,"Alg":"none"`), pay(0, 60, ""), jwa.ES256, ec), ecKey, tokens.ReasonMalformed, "header has a case-folded member name", false},
		// The payload is read only once the signature verifies.
		{"bad JSON, bad signature", sign(hdr("ES256", ""), `{"exp":`, jwa.ES256, mustEC(t)), ecKey, tokens.ReasonSignature, "signature does not verify", true},
		{"payload duplicate", sign(hdr("ES256", ""), pay(0, 60, `,"who":"you"`), jwa.ES256, ec), ecKey, tokens.ReasonMalformed, "payload has a duplicate member name", true},
		{"payload case-folded", sign(hdr("ES256", ""), pay(0, 60, `,"WHO":"you"`), jwa.ES256, ec), ecKey, tokens.ReasonMalformed, "payload has a case-folded member name", true},
		{"payload case-folded time", sign(hdr("ES256", ""), pay(0, 60, `,"Exp":1e10`), jwa.ES256, ec), ecKey, tokens.ReasonMalformed, "payload has a case-folded member name", true},
		{"payload wrong type", sign(hdr("ES256", ""), pay(0, 60, "")[:len(pay(0, 60, ""))-1]+`,"nbf":"now"}`, jwa.ES256, ec), ecKey, tokens.ReasonClaims, "payload has a member of the wrong type", true},
		{"expired", sign(hdr("ES256", ""), pay(-120, -31, ""), jwa.ES256, ec), ecKey, tokens.ReasonExpired, "has expired", true},
		{"expired within the skew", sign(hdr("ES256", ""), pay(-120, -29, ""), jwa.ES256, ec), ecKey, "", "", true},
		{"iat in the future", sign(hdr("ES256", ""), pay(31, 60, ""), jwa.ES256, ec), ecKey, tokens.ReasonClaims, "iat is in the future", true},
		{"iat in the future within the skew", sign(hdr("ES256", ""), pay(29, 60, ""), jwa.ES256, ec), ecKey, "", "", true},
		{"nbf in the future", sign(hdr("ES256", ""), pay(0, 60, fmt.Sprintf(`,"nbf":%d`, iat+31)), jwa.ES256, ec), ecKey, tokens.ReasonClaims, "nbf is in the future", true},
		{"no exp", sign(hdr("ES256", ""), fmt.Sprintf(`{"iat":%d}`, iat), jwa.ES256, ec), ecKey, tokens.ReasonClaims, "exp is required", true},
		{"no iat under a lifetime cap", sign(hdr("ES256", ""), fmt.Sprintf(`{"exp":%d}`, iat+60), jwa.ES256, ec), ecKey, tokens.ReasonClaims, "iat is required", true},
		{"lifetime above the cap", sign(hdr("ES256", ""), pay(0, 301, ""), jwa.ES256, ec), ecKey, tokens.ReasonClaims, "at most 5m0s later", true},
		{"exp not after iat", sign(hdr("ES256", ""), pay(0, 0, ""), jwa.ES256, ec), ecKey, tokens.ReasonClaims, "exp must be after iat", true},
		{"JSON serialization", `{"protected":"` + strings.Split(good, ".")[0] + `"}`, ecKey, tokens.ReasonMalformed, "not a compact JWS", false},
		{"padding", strings.Replace(good, ".", "=.", 1), ecKey, tokens.ReasonMalformed, "not a compact JWS", false},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			keys := &fixedKey{key: r.key}
			var c testClaims
			err := tokens.VerifyJWT(r.tok, rules, now, keys, &c)
			if (keys.calls > 0) != r.keyCall {
				t.Errorf("key source asked %d times", keys.calls)
			}
			if r.reason == "" {
				if err != nil || c.Who != "me" || !c.Expires.Set || !c.IssuedAt.Set {
					t.Fatalf("refused or misread: %+v, %v", c, err)
				}
				return
			}
			var inv *tokens.InvalidError
			if !errors.As(err, &inv) || inv.Reason != r.reason || !strings.Contains(inv.Detail, r.detail) {
				t.Fatalf("got %v, want %s (%s)", err, r.reason, r.detail)
			}
		})
	}

	// The key source is told the kid and the header's jwk, and its own
	// errors come back as they are (a store outage is no refusal).
	outage := errors.New("store down")
	keys := &fixedKey{err: outage}
	jwkTok := sign(hdr("ES256", `,"jwk":{"kty":"EC","crv":"P-256"}`), pay(0, 60, ""), jwa.ES256, ec)
	if err := tokens.VerifyJWT(jwkTok, rules, now, keys, &testClaims{}); !errors.Is(err, outage) {
		t.Fatalf("key source error: %v", err)
	}
	if keys.kid != "key-1" || keys.jwk != `{"kty":"EC","crv":"P-256"}` {
		t.Fatalf("key source asked for kid %q, jwk %q", keys.kid, keys.jwk)
	}
	if err := tokens.VerifyJWT(good, rules, now, keys, &testClaims{}); !errors.Is(err, outage) || keys.jwk != "" {
		t.Fatalf("no jwk: %v, jwk %q", err, keys.jwk)
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

package tokens_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

func payload(t *testing.T, tok string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The nonce of an authorization code goes into the ID token only; the
// other grants' ID tokens carry none.
func TestMintNonce(t *testing.T) {
	t.Parallel()
	k := newKeyring(t, jwa.ES256)
	g := grant(jwa.ES256)
	g.Nonce = "n-0S6_WzA2Mj"
	m := mint(t, k, g, subject)
	if id := payload(t, m.IDToken); id["nonce"] != "n-0S6_WzA2Mj" || id["auth_time"] != float64(subject.AuthTime.Unix()) {
		t.Fatalf("ID token: %v", id)
	}
	if _, ok := payload(t, m.AccessToken)["nonce"]; ok {
		t.Fatal("the access token carries the nonce")
	}
	if _, ok := payload(t, mint(t, k, grant(jwa.ES256), subject).IDToken)["nonce"]; ok {
		t.Fatal("an ID token minted without a nonce has one")
	}
}

// An id_token_hint verifies though expired, under the issuer it was minted
// for; an access token, another issuer, another keyring or a change is
// refused.
func TestVerifyIDTokenHint(t *testing.T) {
	t.Parallel()
	k := newKeyring(t, jwa.RS256, jwa.EdDSA)
	for _, alg := range []jwa.SignatureAlgorithm{jwa.RS256, jwa.EdDSA} {
		m := mint(t, k, grant(alg), subject)
		for _, at := range []time.Time{now0, now0.Add(48 * time.Hour)} {
			h, err := k.VerifyIDTokenHint(m.IDToken, issuer, 30*time.Second, at)
			if err != nil || h.Subject != subject.UserID || h.SessionID != subject.SessionID || len(h.Audience) != 1 || h.Audience[0] != "app" {
				t.Fatalf("%s at %v: %+v, %v", alg, at, h, err)
			}
		}
		other := newKeyring(t, alg)
		tampered := m.IDToken[:len(m.IDToken)-4] + "AAAA"
		for name, c := range map[string]struct{ raw, iss string }{
			"access token":    {m.AccessToken, issuer},
			"another issuer":  {m.IDToken, "https://evil.example"},
			"another keyring": {mint(t, other, grant(alg), subject).IDToken, issuer},
			"tampered":        {tampered, issuer},
			"garbage":         {"not.a.jwt", issuer},
		} {
			h, err := k.VerifyIDTokenHint(c.raw, c.iss, 30*time.Second, now0)
			var inv *tokens.InvalidError
			if !errors.As(err, &inv) || h != nil {
				t.Fatalf("%s, %s: %+v, %v; want an InvalidError", alg, name, h, err)
			}
		}
	}
}

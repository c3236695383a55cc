package tokens

import (
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// TypeAssertion is the JWS typ of identity assertions: never accepted as
// an access token (Verify wants TypeAccess), and its aud is a site, not a
// client.
const TypeAssertion = "assertion+jwt"

// Assertion is a signed statement of who a proxied request is from, for
// an upstream that wants to verify identity cryptographically (from the
// JWKS) rather than trust headers.
type Assertion struct {
	Issuer, Audience string
	Subject          string
	Name, Tag        string
	Anonymous        bool
	IssuedAt         time.Time
	Expires          time.Time
}

// assertionClaims is the payload of an assertion, in claim order.
type assertionClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  []string `json:"aud"`
	IssuedAt  int64    `json:"iat"`
	Expires   int64    `json:"exp"`
	Name      string   `json:"name"`
	Tag       string   `json:"tag"`
	Anonymous bool     `json:"is_anonymous"`
}

// SignAssertion signs a with the current key of alg.
func (k *Keyring) SignAssertion(alg jwa.SignatureAlgorithm, a Assertion) (string, error) {
	sk, err := k.signer(alg)
	if err != nil {
		return "", err
	}
	return sk.signCompact(TypeAssertion, &assertionClaims{
		Issuer: a.Issuer, Subject: a.Subject, Audience: []string{a.Audience},
		IssuedAt: a.IssuedAt.Unix(), Expires: a.Expires.Unix(),
		Name: a.Name, Tag: a.Tag, Anonymous: a.Anonymous,
	})
}

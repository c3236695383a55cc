package tokens

import (
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
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

// SignAssertion signs a with the current key of alg.
func (k *Keyring) SignAssertion(alg jwa.SignatureAlgorithm, a Assertion) (string, error) {
	sk, err := k.signer(alg)
	if err != nil {
		return "", err
	}
	t := jwt.New()
	for name, v := range map[string]any{
		jwt.IssuerKey:     a.Issuer,
		jwt.SubjectKey:    a.Subject,
		jwt.AudienceKey:   []string{a.Audience},
		jwt.IssuedAtKey:   a.IssuedAt,
		jwt.ExpirationKey: a.Expires,
		"name":            a.Name,
		"tag":             a.Tag,
		"is_anonymous":    a.Anonymous,
	} {
		if err := t.Set(name, v); err != nil {
			return "", err
		}
	}
	return k.sign(sk, t, TypeAssertion)
}

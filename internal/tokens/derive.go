package tokens

import (
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/x509"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// DeriveSecret returns a 32-byte secret for purpose (a label naming its one
// use), derived with HKDF-SHA256 from the private key of alg's current
// signing key. It needs no secret of its own in the store: it lives, and is
// rotated, with that key. Different purposes give unrelated secrets, and
// none reveals anything about the signing key.
func (k *Keyring) DeriveSecret(alg jwa.SignatureAlgorithm, purpose string) ([]byte, error) {
	s, err := k.signer(alg)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(s.raw)
	if err != nil {
		return nil, err
	}
	return hkdf.Key(sha256.New, der, nil, "guestauth/"+purpose, 32)
}

// Package jwstest builds compact JWS strings for tests, including ones no
// well-behaved library would produce (alg "none", mismatched headers), so
// tests can check that such tokens are refused.
package jwstest

import (
	"encoding/base64"
	"encoding/json"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
)

// Compact signs exactly the given header and claims with jwx's signer for
// alg; alg "none" gives an empty signature.
func Compact(hdr, claims map[string]any, alg jwa.SignatureAlgorithm, key any) (string, error) {
	enc := func(v any) (string, error) {
		b, err := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b), err
	}
	h, err := enc(hdr)
	if err != nil {
		return "", err
	}
	c, err := enc(claims)
	if err != nil {
		return "", err
	}
	input := h + "." + c
	var sig []byte
	if alg != jwa.NoSignature {
		signer, err := jws.NewSigner(alg)
		if err != nil {
			return "", err
		}
		if sig, err = signer.Sign([]byte(input), key); err != nil {
			return "", err
		}
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

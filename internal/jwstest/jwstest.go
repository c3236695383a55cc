// Package jwstest builds compact JWS strings for tests, including ones no
// well-behaved library would produce (alg "none", mismatched headers,
// duplicate member names), so tests can check that such tokens are
// refused.
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
	h, err := json.Marshal(hdr)
	if err != nil {
		return "", err
	}
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	return CompactJSON(string(h), string(c), alg, key)
}

// CompactJSON signs the header and claims JSON texts verbatim (whatever
// they hold: duplicate names, invalid UTF-8, not JSON at all) with jwx's
// signer for alg; alg "none" gives an empty signature.
func CompactJSON(hdr, claims string, alg jwa.SignatureAlgorithm, key any) (string, error) {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(hdr)) + "." + enc.EncodeToString([]byte(claims))
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
	return input + "." + enc.EncodeToString(sig), nil
}

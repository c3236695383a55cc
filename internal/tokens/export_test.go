package tokens

import (
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// Len is the number of cached tokens.
func (c *Cache) Len() int { return c.lru.Len() }

// WaitReloadGap sleeps past keyReloadGap.
func WaitReloadGap() { time.Sleep(keyReloadGap + 50*time.Millisecond) }

// SignJSON signs header and payload verbatim with the keyring's key for
// alg, so tests can build validly signed tokens with any JSON in them.
func (k *Keyring) SignJSON(alg jwa.SignatureAlgorithm, header, payload string) (string, error) {
	sk, err := k.signer(alg)
	if err != nil {
		return "", err
	}
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload))
	sig, err := sk.rawSign([]byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + b64.EncodeToString(sig), nil
}

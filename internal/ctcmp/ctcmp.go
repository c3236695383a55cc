// Package ctcmp compares secrets in constant time without revealing their
// length: both sides are reduced to fixed-size SHA-256 digests first, so the
// comparison always looks at 32 bytes whatever was sent. (crypto/subtle's
// ConstantTimeCompare returns at once when the lengths differ, which tells a
// caller probing with inputs of every length how long the secret is.)
package ctcmp

import (
	"crypto/sha256"
	"crypto/subtle"
)

// Digest is the fixed-size form a secret is compared in. Compute it once for
// a stored secret, so checking a request hashes only the presented value and
// its cost never depends on the stored secret's length.
type Digest [sha256.Size]byte

// Sum returns the digest of secret.
func Sum(secret []byte) Digest { return sha256.Sum256(secret) }

// Matches reports, in constant time, whether got is the secret of want.
func (want *Digest) Matches(got []byte) bool {
	g := Sum(got)
	return subtle.ConstantTimeCompare(g[:], want[:]) == 1
}

// Equal reports, in constant time and without revealing either length,
// whether a and b are equal.
func Equal(a, b []byte) bool {
	da, db := Sum(a), Sum(b)
	return subtle.ConstantTimeCompare(da[:], db[:]) == 1
}

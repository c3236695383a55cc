package tokens

import (
	"crypto/sha256"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/guestauth/caddy-guestauth/internal/metrics"
)

// DefaultCacheSize is the default number of cached tokens: a 64 MiB budget
// at the measured ≈ 530 bytes per entry (TestCacheBytesPerEntry; claims of
// a guest token with their strings in one allocation, key, LRU
// bookkeeping), rounded down to 100 000. Entries
// are keyed by the SHA-256 of the token, not the token itself, so an RS256
// token (≈ 700 bytes) costs the same as an EdDSA one.
const DefaultCacheSize = 100_000

// Cache remembers verified access tokens so the per-request path skips
// signature verification (tens of µs) on repeat requests. It is bounded:
// when full, an insert evicts the least recently used token (in O(1), no
// scan). Hits and misses are counted in
// caddy_guest_auth_token_cache_{hits,misses}_total.
type Cache struct {
	lru *lru.Cache[[sha256.Size]byte, *AccessClaims]
}

// NewCache makes a cache of at most max entries (max <= 0 disables it: nil).
func NewCache(max int) *Cache {
	if max <= 0 {
		return nil
	}
	c, _ := lru.New[[sha256.Size]byte, *AccessClaims](max) // only fails for max <= 0
	return &Cache{lru: c}
}

// cacheKey is the SHA-256 of raw: collision resistant, so a token can
// never be answered with another token's claims.
func cacheKey(raw string) [sha256.Size]byte { return sum256(raw) }

// Get returns the claims cached for raw. The caller still checks expiry and
// issuer (the verifier does).
func (c *Cache) Get(raw string) (*AccessClaims, bool) { return c.get(cacheKey(raw)) }

// get is Get by key, so that a miss hashes the token once for Get and Put.
func (c *Cache) get(key [sha256.Size]byte) (*AccessClaims, bool) {
	v, ok := c.lru.Get(key)
	if ok {
		metrics.TokenCacheHit()
	} else {
		metrics.TokenCacheMiss()
	}
	return v, ok
}

// Put caches verified claims.
func (c *Cache) Put(raw string, v *AccessClaims) { c.lru.Add(cacheKey(raw), v) }

func (c *Cache) put(key [sha256.Size]byte, v *AccessClaims) { c.lru.Add(key, v) }

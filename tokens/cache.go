package tokens

import lru "github.com/hashicorp/golang-lru/v2"

// Cache remembers verified access tokens so the per-request path skips
// signature verification (tens of µs) on repeat requests. It is bounded:
// when full, an insert evicts the least recently used token. Entries are
// keyed by the whole token string.
type Cache struct {
	lru *lru.Cache[string, *AccessClaims]
}

// NewCache makes a cache of at most max entries (max <= 0 disables it: nil).
func NewCache(max int) *Cache {
	if max <= 0 {
		return nil
	}
	c, _ := lru.New[string, *AccessClaims](max) // only fails for max <= 0
	return &Cache{lru: c}
}

// Get returns the claims cached for raw. The caller still checks expiry and
// issuer (the verifier does).
func (c *Cache) Get(raw string) (*AccessClaims, bool) { return c.lru.Get(raw) }

// Put caches verified claims.
func (c *Cache) Put(raw string, v *AccessClaims) { c.lru.Add(raw, v) }

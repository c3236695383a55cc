package tokens

import (
	"sync"
	"time"
)

// Cache remembers verified access tokens so the per-request path skips
// signature verification (tens of µs) on repeat requests. It is bounded:
// when full, an insert evicts expired entries it meets and, failing that,
// an arbitrary one. Entries are keyed by the whole token string.
type Cache struct {
	mu  sync.RWMutex
	m   map[string]*AccessClaims
	max int
	now func() time.Time
}

// NewCache makes a cache of at most max entries (max <= 0 disables it: nil).
func NewCache(max int, now func() time.Time) *Cache {
	if max <= 0 {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &Cache{m: make(map[string]*AccessClaims, min(max, 1024)), max: max, now: now}
}

// Get returns the claims cached for raw. The caller still checks expiry and
// issuer (the verifier does).
func (c *Cache) Get(raw string) (*AccessClaims, bool) {
	c.mu.RLock()
	v, ok := c.m[raw]
	c.mu.RUnlock()
	return v, ok
}

// Put caches verified claims.
func (c *Cache) Put(raw string, v *AccessClaims) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		now := c.now()
		// Go randomizes map iteration order, so this samples a few entries.
		scanned := 0
		for k, e := range c.m {
			if !now.Before(e.ExpiresAt) || len(c.m) >= c.max {
				delete(c.m, k)
			}
			if scanned++; scanned >= 8 {
				break
			}
		}
	}
	c.m[raw] = v
}

// Len is the number of cached tokens.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}

package storage

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// IdentityCache keeps decoded users and sessions for Identity, the read made
// on every proxied request, so a repeat request skips decoding (and, for a
// network store, a round trip).
//
// It never serves a record older than the store's as long as every write is
// reported to it: a backend's own writes drop the records they touch before
// they commit (with WriteBegin/WriteEnd around them), and a read result is
// cached only if no write was running when the read started or ended and
// none finished in between. Writes made elsewhere — by another process or
// node sharing the store — must be reported through Invalidate*, which a
// shared-store backend drives from its change notifications; the bbolt
// backend needs none, as no other process can write its file. Cached values
// are shared: callers must not modify them. When full, it evicts the least
// recently used user and session.
type IdentityCache struct {
	mu       sync.Mutex
	users    *simplelru.LRU[string, *model.User]
	sessions *simplelru.LRU[string, *model.Session]
	off      bool          // nothing is cached
	writing  atomic.Int64  // write transactions in progress
	done     atomic.Uint64 // write transactions finished
}

// NewIdentityCache makes a cache of at most size users and size sessions
// (size <= 0: nothing is cached).
func NewIdentityCache(size int) *IdentityCache {
	c := &IdentityCache{off: size <= 0}
	size = max(size, 1) // NewLRU only fails for a size <= 0
	c.users, _ = simplelru.NewLRU[string, *model.User](size, nil)
	c.sessions, _ = simplelru.NewLRU[string, *model.Session](size, nil)
	return c
}

// Get returns a cached user and session, if both are cached and belong
// together.
func (c *IdentityCache) Get(userID, sessionID string) (*model.User, *model.Session, bool) {
	c.mu.Lock()
	u, _ := c.users.Get(userID)
	s, _ := c.sessions.Get(sessionID)
	c.mu.Unlock()
	if u == nil || s == nil || s.UserID != userID {
		return nil, nil, false
	}
	return u, s, true
}

// Snapshot is taken before a read; Put refuses the result if a write may
// have overlapped the read.
type Snapshot struct {
	writing int64
	done    uint64
}

// Snapshot is the cache's write state, to take before reading a pair.
func (c *IdentityCache) Snapshot() Snapshot {
	return Snapshot{writing: c.writing.Load(), done: c.done.Load()}
}

// Put caches a pair read after before was taken, unless a write may have
// overlapped the read.
func (c *IdentityCache) Put(before Snapshot, u *model.User, s *model.Session) {
	if c.off || before.writing != 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writing.Load() != 0 || c.done.Load() != before.done {
		return
	}
	c.users.Add(u.ID, u)
	c.sessions.Add(s.ID, s)
}

// InvalidateUser drops a user changed or deleted outside this cache's
// knowledge.
func (c *IdentityCache) InvalidateUser(id string) {
	c.mu.Lock()
	c.users.Remove(id)
	c.done.Add(1) // a read already under way must not cache the old record
	c.mu.Unlock()
}

// InvalidateSession drops a session changed or ended outside this cache's
// knowledge.
func (c *IdentityCache) InvalidateSession(id string) {
	c.mu.Lock()
	c.sessions.Remove(id)
	c.done.Add(1)
	c.mu.Unlock()
}

// InvalidateAll empties the cache, for when changes may have been missed
// (a lost notification connection, say).
func (c *IdentityCache) InvalidateAll() {
	c.mu.Lock()
	c.users.Purge()
	c.sessions.Purge()
	c.done.Add(1)
	c.mu.Unlock()
}

// TouchUsers raises the activity time of the cached users among at, after
// a committed activity flush (Backend.TouchUsers), instead of dropping
// them: activity changes nothing a request sees, and a flush covers every
// active user, so dropping them would make each one's next request read
// the store again. A cached value is replaced by a changed copy, never
// modified, as callers may hold it.
func (c *IdentityCache) TouchUsers(at map[string]time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, t := range at {
		if u, ok := c.users.Peek(id); ok && t.After(u.LastActiveAt) {
			cp := *u
			cp.LastActiveAt = t
			c.users.Add(id, &cp)
		}
	}
}

// Len is how many users the cache holds.
func (c *IdentityCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.users.Len()
}

// WriteBegin and WriteEnd bracket every write of the backend's own.
func (c *IdentityCache) WriteBegin() { c.writing.Add(1) }

// WriteEnd ends what WriteBegin started.
func (c *IdentityCache) WriteEnd() {
	c.done.Add(1)
	c.writing.Add(-1)
}

// DefaultIdentityCacheSize is the default number of cached identities (a
// user and a session each): 100 000, like the token cache, so that every
// token the token cache holds finds its identity cached too. It costs about
// 0.9 KiB per identity (TestIdentityCacheBytesPerEntry measured 884 bytes
// for a guest), so about 84 MiB when full; memory grows only with the
// identities actually in use.
const DefaultIdentityCacheSize = 100_000

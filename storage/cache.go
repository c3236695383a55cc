package storage

import (
	"sync"
	"sync/atomic"
)

// identityCache keeps decoded users and sessions for Identity, the read made
// on every proxied request, so a repeat request skips JSON decoding.
//
// It never serves a record older than the store's: every write transaction
// drops the records it touches (saveUser, putSession and deleteSession call
// drop*) before it commits, and a read result is cached only if no write
// transaction was running when the read started or ended and none finished
// in between. Cached values are shared: callers must not modify them.
type identityCache struct {
	mu       sync.RWMutex
	users    map[string]*User
	sessions map[string]*Session
	max      int
	writing  atomic.Int64  // write transactions in progress
	done     atomic.Uint64 // write transactions finished
}

func newIdentityCache(max int) *identityCache {
	return &identityCache{users: map[string]*User{}, sessions: map[string]*Session{}, max: max}
}

func (c *identityCache) get(userID, sessionID string) (*User, *Session, bool) {
	c.mu.RLock()
	u, s := c.users[userID], c.sessions[sessionID]
	c.mu.RUnlock()
	if u == nil || s == nil || s.UserID != userID {
		return nil, nil, false
	}
	return u, s, true
}

// snapshot is taken before a read; put refuses the result if a write may
// have overlapped the read.
type snapshot struct {
	writing int64
	done    uint64
}

func (c *identityCache) snapshot() snapshot {
	return snapshot{writing: c.writing.Load(), done: c.done.Load()}
}

func (c *identityCache) put(before snapshot, u *User, s *Session) {
	if c.max <= 0 || before.writing != 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.writing.Load() != 0 || c.done.Load() != before.done {
		return
	}
	evictOne(c.users, c.max)
	evictOne(c.sessions, c.max)
	c.users[u.ID] = u
	c.sessions[s.ID] = s
}

// evictOne makes room by dropping an arbitrary entry (map order is random).
func evictOne[V any](m map[string]V, max int) {
	if len(m) < max {
		return
	}
	for k := range m {
		delete(m, k)
		return
	}
}

func (c *identityCache) dropUser(id string) {
	c.mu.Lock()
	delete(c.users, id)
	c.mu.Unlock()
}

func (c *identityCache) dropSession(id string) {
	c.mu.Lock()
	delete(c.sessions, id)
	c.mu.Unlock()
}

// writeBegin and writeEnd bracket every write transaction.
func (c *identityCache) writeBegin() { c.writing.Add(1) }

func (c *identityCache) writeEnd() {
	c.done.Add(1)
	c.writing.Add(-1)
}

// CachedIdentities is how many users the identity cache holds.
func (b *Bolt) CachedIdentities() int {
	b.cache.mu.RLock()
	defer b.cache.mu.RUnlock()
	return len(b.cache.users)
}

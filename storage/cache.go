package storage

import (
	"sync"
	"sync/atomic"
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
// are shared: callers must not modify them.
type IdentityCache struct {
	mu       sync.RWMutex
	users    map[string]*User
	sessions map[string]*Session
	max      int
	writing  atomic.Int64  // write transactions in progress
	done     atomic.Uint64 // write transactions finished
}

// NewIdentityCache makes a cache of at most max users and max sessions
// (max <= 0: nothing is cached).
func NewIdentityCache(max int) *IdentityCache {
	return &IdentityCache{users: map[string]*User{}, sessions: map[string]*Session{}, max: max}
}

// Get returns a cached user and session, if both are cached and belong
// together.
func (c *IdentityCache) Get(userID, sessionID string) (*User, *Session, bool) {
	c.mu.RLock()
	u, s := c.users[userID], c.sessions[sessionID]
	c.mu.RUnlock()
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
func (c *IdentityCache) Put(before Snapshot, u *User, s *Session) {
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

// InvalidateUser drops a user changed or deleted outside this cache's
// knowledge.
func (c *IdentityCache) InvalidateUser(id string) {
	c.mu.Lock()
	delete(c.users, id)
	c.done.Add(1) // a read already under way must not cache the old record
	c.mu.Unlock()
}

// InvalidateSession drops a session changed or ended outside this cache's
// knowledge.
func (c *IdentityCache) InvalidateSession(id string) {
	c.mu.Lock()
	delete(c.sessions, id)
	c.done.Add(1)
	c.mu.Unlock()
}

// InvalidateAll empties the cache, for when changes may have been missed
// (a lost notification connection, say).
func (c *IdentityCache) InvalidateAll() {
	c.mu.Lock()
	clear(c.users)
	clear(c.sessions)
	c.done.Add(1)
	c.mu.Unlock()
}

// Len is how many users the cache holds.
func (c *IdentityCache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.users)
}

// WriteBegin and WriteEnd bracket every write of the backend's own.
func (c *IdentityCache) WriteBegin() { c.writing.Add(1) }

// WriteEnd ends what WriteBegin started.
func (c *IdentityCache) WriteEnd() {
	c.done.Add(1)
	c.writing.Add(-1)
}

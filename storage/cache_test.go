package storage_test

import (
	"testing"

	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/storagetest"
)

var (
	newUser    = storagetest.NewUser
	newSession = storagetest.NewSession
)

// A full cache evicts the least recently used user and session, so the
// identities of active users stay while new ones pass through.
func TestIdentityCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	c := storage.NewIdentityCache(2)
	put := func(id string) {
		c.Put(c.Snapshot(), newUser("u"+id, "user"+id), newSession("s"+id, "u"+id))
	}
	put("0")
	put("1")
	if _, _, ok := c.Get("u0", "s0"); !ok { // u0 is now the most recently used
		t.Fatal("u0 is not cached")
	}
	put("2")
	if _, _, ok := c.Get("u0", "s0"); !ok {
		t.Fatal("the recently used identity was evicted")
	}
	if _, _, ok := c.Get("u1", "s1"); ok {
		t.Fatal("the least recently used identity was kept")
	}
	if c.Len() != 2 {
		t.Fatalf("len %d, want 2", c.Len())
	}
	// Size 0 caches nothing.
	off := storage.NewIdentityCache(0)
	off.Put(off.Snapshot(), newUser("u0", "user0"), newSession("s0", "u0"))
	if _, _, ok := off.Get("u0", "s0"); ok || off.Len() != 0 {
		t.Fatal("a disabled cache cached")
	}
}

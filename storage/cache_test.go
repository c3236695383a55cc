package storage_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

func TestIdentityCacheBounded(t *testing.T) {
	t.Parallel()
	b, err := storage.OpenBolt(t.TempDir()+"/c.db", storage.Options{IdentityCacheSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := range 5 {
		id := strconv.Itoa(i)
		mustCreate(t, b, newUser("u"+id, "user"+id), newSession("s"+id, "u"+id), nil)
		if _, _, err := b.Identity(bg, "u"+id, "s"+id); err != nil {
			t.Fatal(err)
		}
	}
	// Every identity still reads right, cached or not.
	for i := range 5 {
		id := strconv.Itoa(i)
		if u, s, err := b.Identity(bg, "u"+id, "s"+id); err != nil || u.ID != "u"+id || s.ID != "s"+id {
			t.Fatalf("identity %s: %v %v %v", id, u, s, err)
		}
	}
	if n := b.CachedIdentities(); n > 2 {
		t.Fatalf("cache holds %d users, bound is 2", n)
	}
}

// The bbolt file has one writer, so the cache needs no outside invalidation;
// a write it is not told of (as another node's would be) shows only after
// Invalidate*, which is what a shared-store backend relies on.
func TestIdentityCacheServesUnreportedWriteUntilInvalidated(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("u1", "ann"), newSession("s1", "u1"), nil)
	u1, s1, err := b.Identity(bg, "u1", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if u2, s2, err := b.Identity(bg, "u1", "s1"); err != nil || u2 != u1 || s2 != s1 {
		t.Fatalf("second read not served from the cache: %p %p / %p %p, %v", u1, s1, u2, s2, err)
	}
	changed := *newUser("u1", "ann")
	changed.Tag = model.TagNormal
	if err := b.PutUserUnreported(&changed); err != nil {
		t.Fatal(err)
	}
	if u, _, _ := b.Identity(bg, "u1", "s1"); u.Tag != model.TagGuest {
		t.Fatalf("the unreported write showed without invalidation: %+v (the test's premise is wrong)", u)
	}
	b.IdentityCache().InvalidateUser("u1")
	if u, _, _ := b.Identity(bg, "u1", "s1"); u.Tag != model.TagNormal {
		t.Fatalf("after InvalidateUser: %+v", u)
	}
	if err := b.DeleteSessionUnreported("s1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Identity(bg, "u1", "s1"); err != nil {
		t.Fatalf("the unreported delete showed without invalidation: %v", err)
	}
	b.IdentityCache().InvalidateSession("s1")
	if _, _, err := b.Identity(bg, "u1", "s1"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("after InvalidateSession: %v", err)
	}
}

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

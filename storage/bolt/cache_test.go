package bolt_test

import (
	"errors"
	"strconv"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

func TestIdentityCacheBounded(t *testing.T) {
	t.Parallel()
	b, err := bolt.Open(t.TempDir()+"/c.db", bolt.Options{IdentityCacheSize: 2})
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

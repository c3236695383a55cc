package storage_test

import (
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/guestauth/caddy-guestauth/storage"
)

func TestIdentityCacheFollowsWrites(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("u1", "ann"), newSession("s1", "u1"), nil)

	u1, s1, err := b.Identity("u1", "s1")
	if err != nil {
		t.Fatal(err)
	}
	u2, s2, err := b.Identity("u1", "s1")
	if err != nil || u2 != u1 || s2 != s1 {
		t.Fatalf("second read not served from the cache: %p %p / %p %p, %v", u1, s1, u2, s2, err)
	}
	if _, err := b.UpdateUser("u1", func(u *storage.User) error { u.Tag = storage.TagNormal; return nil }); err != nil {
		t.Fatal(err)
	}
	if u, _, _ := b.Identity("u1", "s1"); u.Tag != storage.TagNormal {
		t.Fatalf("cached user survived an update: %+v", u)
	}
	if _, err := b.UpdateSession("s1", func(s *storage.Session) error { s.Generation = 7; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, s, _ := b.Identity("u1", "s1"); s.Generation != 7 {
		t.Fatalf("cached session survived an update: %+v", s)
	}
	// A session of another user is never paired with this one.
	mustCreate(t, b, newUser("u2", "bob"), newSession("s2", "u2"), nil)
	if _, _, err := b.Identity("u1", "s2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("mismatched pair: %v", err)
	}
	if err := b.DeleteSession("s1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Identity("u1", "s1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted session still served: %v", err)
	}
	b.Identity("u2", "s2")
	if err := b.DeleteUser("u2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Identity("u2", "s2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted user still served: %v", err)
	}
}

// Readers never see a value older than one whose write had finished before
// they started, however reads and writes interleave.
func TestIdentityCacheNeverStale(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("u1", "cat"), newSession("s1", "u1"), nil)
	var committed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stale atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				want := committed.Load()
				u, _, err := b.Identity("u1", "s1")
				if err != nil {
					t.Error(err)
					return
				}
				if got, _ := strconv.ParseInt(u.DisplayName, 10, 64); got < want {
					stale.Add(1)
				}
			}
		}()
	}
	for i := int64(1); i <= 300; i++ {
		if _, err := b.UpdateUser("u1", func(u *storage.User) error { u.DisplayName = strconv.FormatInt(i, 10); return nil }); err != nil {
			t.Fatal(err)
		}
		committed.Store(i)
	}
	close(stop)
	wg.Wait()
	if n := stale.Load(); n > 0 {
		t.Fatalf("%d reads returned a value older than a finished write", n)
	}
}

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
		if _, _, err := b.Identity("u"+id, "s"+id); err != nil {
			t.Fatal(err)
		}
	}
	// Every identity still reads right, cached or not.
	for i := range 5 {
		id := strconv.Itoa(i)
		if u, s, err := b.Identity("u"+id, "s"+id); err != nil || u.ID != "u"+id || s.ID != "s"+id {
			t.Fatalf("identity %s: %v %v %v", id, u, s, err)
		}
	}
	if n := b.CachedIdentities(); n > 2 {
		t.Fatalf("cache holds %d users, bound is 2", n)
	}
}

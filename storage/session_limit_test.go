package storage_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/storage"
)

func TestPutSessionLimitEndsOldest(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("u1", "Alice"), newSession("s0", "u1"), nil)
	mustCreate(t, b, newUser("u2", "Bob"), newSession("b0", "u2"), nil)
	// s1..s4 are each a minute younger than the one before; s0 is the oldest.
	for i := 1; i <= 4; i++ {
		s := newSession(fmt.Sprintf("s%d", i), "u1")
		s.CreatedAt = t0.Add(time.Duration(i) * time.Minute)
		n, err := b.PutSessionLimit(s, 3)
		want := max(0, i+1-3)
		if err != nil || n != min(want, 1) {
			t.Fatalf("PutSessionLimit(s%d) = %d, %v; want %d ended", i, n, err, min(want, 1))
		}
	}
	for sid, want := range map[string]bool{"s0": false, "s1": false, "s2": true, "s3": true, "s4": true, "b0": true} {
		if _, err := b.GetSession(sid); (err == nil) != want {
			t.Fatalf("session %s exists = %v, want %v", sid, err == nil, want)
		}
	}
	// The new session is kept even when it is not the youngest.
	old := newSession("s-old", "u1")
	old.CreatedAt = t0.Add(-time.Hour)
	if n, err := b.PutSessionLimit(old, 3); err != nil || n != 1 {
		t.Fatalf("PutSessionLimit(s-old) = %d, %v", n, err)
	}
	if _, err := b.GetSession("s-old"); err != nil {
		t.Fatalf("the stored session was ended: %v", err)
	}
	if _, err := b.GetSession("s2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("s2 survived: %v", err)
	}
	// keep <= 0: no limit.
	if n, err := b.PutSessionLimit(newSession("s5", "u1"), 0); err != nil || n != 0 {
		t.Fatalf("unlimited PutSessionLimit = %d, %v", n, err)
	}
	if _, err := b.PutSessionLimit(newSession("x", "nobody"), 3); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("session of a missing user: %v", err)
	}
}

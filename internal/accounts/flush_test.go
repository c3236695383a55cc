package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// chunkStore records the size of each TouchUsers write and can fail one.
type chunkStore struct {
	sizes  []int
	failAt int // 1-based call to fail, 0 never
	calls  int
	got    map[string]time.Time
}

func (c *chunkStore) TouchUsers(_ context.Context, at map[string]time.Time) (int, error) {
	c.calls++
	if c.calls == c.failAt {
		return 0, errors.New("disk full")
	}
	c.sizes = append(c.sizes, len(at))
	for id, t := range at {
		c.got[id] = t
	}
	return len(at), nil
}

// A flush of many users is written in bounded chunks, and a chunk that
// fails is kept, with the rest, for the next flush.
func TestActivityFlushInChunks(t *testing.T) {
	st := &chunkStore{got: map[string]time.Time{}, failAt: 2}
	act := accounts.NewActivity(st)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const users = 2500
	for i := range users {
		act.Touch(fmt.Sprintf("user-%05d", i), at)
	}
	if err := act.Flush(bg); err == nil {
		t.Fatal("the failing write was not reported")
	}
	if err := act.Flush(bg); err != nil {
		t.Fatal(err)
	}
	if len(st.got) != users {
		t.Fatalf("%d users written, want %d", len(st.got), users)
	}
	sort.Ints(st.sizes)
	if len(st.sizes) < 3 || st.sizes[len(st.sizes)-1] > 1000 {
		t.Fatalf("write sizes %v: want chunks of at most 1000", st.sizes)
	}
}

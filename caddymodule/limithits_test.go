package caddymodule

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

type refusingDaily struct{ storage.DailyStore }

func (refusingDaily) AddDaily(context.Context, []storage.DayCount) error {
	return errors.New("store down")
}

// Limit refusals are counted in memory, per store, and added to that
// store's daily counters in one write per flush; a flush the store refuses
// keeps them for the next one. Another store's counter is not touched.
func TestFlushLimitHits(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "h.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var hits, other accounts.LimitHits
	for range 3 {
		hits.Add(accounts.LimitIP)
	}
	hits.Add(accounts.LimitSignIn)
	other.Add(accounts.LimitCap)
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := flushLimitHits(context.Background(), refusingDaily{st}, &hits, now); err == nil {
		t.Fatal("a refused flush reported no error")
	}
	hits.Add(accounts.LimitIP)
	if err := flushLimitHits(context.Background(), st, &hits, now); err != nil {
		t.Fatal(err)
	}
	got, err := st.Daily(context.Background(), "2030-05-01", "2030-05-01")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, c := range got {
		m[c.Series] = c.N
	}
	if len(m) != 2 || m["limit.ip"] != 4 || m["limit.signin"] != 1 {
		t.Fatalf("daily limit counts %v; want limit.ip 4, limit.signin 1 and nothing else", m)
	}
	if left := hits.Take(); left != nil {
		t.Fatalf("left after the flush: %v", left)
	}
	if left := other.Take(); left[accounts.LimitCap] != 1 {
		t.Fatalf("the other store's count: %v", left)
	}
}

package caddymodule

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

type refusingDaily struct{ storage.DailyStore }

func (refusingDaily) AddDaily(context.Context, []storage.DayCount) error {
	return errors.New("store down")
}

// Limit refusals are counted in memory and added to the store's daily
// counters in one write per flush; a flush the store refuses keeps them
// for the next one.
func TestFlushLimitHits(t *testing.T) {
	st, err := bolt.Open(filepath.Join(t.TempDir(), "h.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	metrics.TakeLimitHits() // what other tests counted
	for range 3 {
		metrics.RateLimited(metrics.LimitIP)
	}
	metrics.RateLimited(metrics.LimitSignIn)
	now := time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC)
	if err := flushLimitHits(context.Background(), refusingDaily{st}, now); err == nil {
		t.Fatal("a refused flush reported no error")
	}
	metrics.RateLimited(metrics.LimitIP)
	if err := flushLimitHits(context.Background(), st, now); err != nil {
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
	// Other parallel tests of this package may refuse requests too: at least ours.
	if m["limit.ip"] < 4 || m["limit.signin"] < 1 {
		t.Fatalf("daily limit counts %v; want limit.ip 4, limit.signin 1", m)
	}
}

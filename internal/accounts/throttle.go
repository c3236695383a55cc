package accounts

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// Limit is a token bucket: Burst tries are allowed at once, then one more
// per Interval.
type Limit struct {
	Burst    int
	Interval time.Duration
}

// Throttle keeps a token bucket (a rate.Limiter driven by the injected
// clock) per key, such as an account name or a client IP. It is bounded:
// when it holds too many keys, a new key pushes out the one least recently
// spent from, whose bucket has had the longest to refill (a full bucket is
// the same as none).
type Throttle struct {
	limit Limit
	now   func() time.Time
	mu    sync.Mutex
	m     *simplelru.LRU[string, *rate.Limiter]
}

// NewThrottle makes a throttle; a zero Burst disables it (nil).
func NewThrottle(l Limit, now func() time.Time) *Throttle {
	if l.Burst <= 0 || l.Interval <= 0 {
		return nil
	}
	m, _ := simplelru.NewLRU[string, *rate.Limiter](100_000, nil) // fails only for a size <= 0
	return &Throttle{limit: l, now: now, m: m}
}

// Take spends one try for key if it has one and returns 0, or returns how
// long until it will have one (spending nothing).
func (t *Throttle) Take(key string) time.Duration {
	if t == nil {
		return 0
	}
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if wait := t.waitLocked(key, now); wait > 0 {
		return wait
	}
	t.takeLocked(key, now)
	return 0
}

// Reset forgets key, giving it a full bucket again.
func (t *Throttle) Reset(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	t.m.Remove(key)
	t.mu.Unlock()
}

// wait is zero when key has a try at now, else how long until it has one.
func (t *Throttle) wait(key string, now time.Time) time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.waitLocked(key, now)
}

// take spends one try for key at now, which wait said it has.
func (t *Throttle) take(key string, now time.Time) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.takeLocked(key, now)
}

func (t *Throttle) waitLocked(key string, now time.Time) time.Duration {
	lim, ok := t.m.Get(key) // a refused try counts as use too
	if !ok {
		return 0
	}
	// The bucket is float arithmetic: allow for rounding at a whole try.
	tokens := lim.TokensAt(now)
	if tokens >= 1-1e-9 {
		return 0
	}
	return time.Duration((1 - tokens) * float64(t.limit.Interval))
}

func (t *Throttle) takeLocked(key string, now time.Time) {
	lim, ok := t.m.Get(key)
	if !ok {
		lim = rate.NewLimiter(rate.Every(t.limit.Interval), t.limit.Burst)
		t.m.Add(key, lim)
	}
	// ReserveN always spends (into debt, at worst by a rounding error).
	lim.ReserveN(now, 1)
}

// Limiter is a keyed token bucket kept outside the Service, such as one in
// the store that every process using it shares (see Config.SharedLimits
// and StoreLimit). Each method is atomic where the bucket is kept. An error
// (model.ErrUnavailable when the store cannot answer) refuses the
// request: a limit that cannot be checked never admits.
type Limiter interface {
	// Take spends one try for key at now and returns 0, or returns how
	// long until key has one, spending nothing.
	Take(ctx context.Context, key string, now time.Time) (time.Duration, error)
	// Refund gives back one try Take spent.
	Refund(ctx context.Context, key string) error
	// Reset gives key a full bucket again.
	Reset(ctx context.Context, key string) error
}

// StoreLimit is the Limiter of l kept in a store under name: processes
// naming the same limit share its buckets.
func StoreLimit(st LimitStore, name string, l Limit) Limiter {
	return storeLimit{st: st, name: name, l: l}
}

type storeLimit struct {
	st   LimitStore
	name string
	l    Limit
}

func (sl storeLimit) Take(ctx context.Context, key string, now time.Time) (time.Duration, error) {
	return sl.st.LimitTake(ctx, sl.name, key, sl.l.Burst, sl.l.Interval, now)
}

func (sl storeLimit) Refund(ctx context.Context, key string) error {
	return sl.st.LimitRefund(ctx, sl.name, key, sl.l.Interval)
}

func (sl storeLimit) Reset(ctx context.Context, key string) error {
	return sl.st.LimitReset(ctx, sl.name, key)
}

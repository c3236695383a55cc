package accounts

import (
	"math"
	"sync"
	"time"
)

// Limit is a token bucket: Burst failures are allowed at once, then one more
// per Interval.
type Limit struct {
	Burst    int
	Interval time.Duration
}

// Throttle counts failures per key (an account name or a client IP) in
// memory. It is bounded: when it holds too many keys, keys whose bucket has
// refilled (equivalent to absent) are dropped.
type Throttle struct {
	limit Limit
	now   func() time.Time
	mu    sync.Mutex
	m     map[string]*bucket
	max   int
}

type bucket struct {
	tokens float64
	at     time.Time
}

// NewThrottle makes a throttle; a zero Burst disables it (nil).
func NewThrottle(l Limit, now func() time.Time) *Throttle {
	if l.Burst <= 0 || l.Interval <= 0 {
		return nil
	}
	return &Throttle{limit: l, now: now, m: map[string]*bucket{}, max: 100_000}
}

// refill brings b up to date; the caller holds t.mu.
func (t *Throttle) refill(b *bucket, now time.Time) {
	b.tokens = math.Min(float64(t.limit.Burst), b.tokens+float64(now.Sub(b.at))/float64(t.limit.Interval))
	b.at = now
}

// Wait is zero when key may try now, else how long until it may.
func (t *Throttle) Wait(key string) time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.m[key]
	if !ok {
		return 0
	}
	now := t.now()
	t.refill(b, now)
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(t.limit.Interval))
}

// Fail records a failed attempt for key.
func (t *Throttle) Fail(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucket(key)
	b.tokens = math.Max(0, b.tokens-1)
}

// bucket returns key's bucket, refilled to now, making a full one if needed;
// the caller holds t.mu.
func (t *Throttle) bucket(key string) *bucket {
	now := t.now()
	b, ok := t.m[key]
	if !ok {
		if len(t.m) >= t.max {
			t.prune(now)
		}
		b = &bucket{tokens: float64(t.limit.Burst), at: now}
		t.m[key] = b
	}
	t.refill(b, now)
	return b
}

// Take spends one try for key if it has one and returns 0, or returns how
// long until it will have one (spending nothing).
func (t *Throttle) Take(key string) time.Duration {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucket(key)
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) * float64(t.limit.Interval))
	}
	b.tokens--
	return 0
}

// Reset forgets key (after a success).
func (t *Throttle) Reset(key string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

func (t *Throttle) prune(now time.Time) {
	for k, b := range t.m {
		t.refill(b, now)
		if b.tokens >= float64(t.limit.Burst) {
			delete(t.m, k)
		}
	}
	// Still full of active attackers: drop arbitrary keys rather than grow.
	for k := range t.m {
		if len(t.m) < t.max {
			break
		}
		delete(t.m, k)
	}
}

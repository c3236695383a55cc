package events_test

import (
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
)

// clock is a settable clock for Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var lifecycle = []string{events.GuestCreated, events.GuestUpgraded, events.GuestExpired, events.UserDeleted, events.SessionRevoked, events.RefreshReuseDetected}

func TestNoisy(t *testing.T) {
	for _, typ := range lifecycle {
		if events.Noisy(typ) {
			t.Errorf("%s is noisy", typ)
		}
	}
	if !events.Noisy(events.SignInThrottled) || events.Noisy("something.new") {
		t.Error("only signin.throttled is noisy")
	}
}

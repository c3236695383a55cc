package accounts_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// A full throttle pushes out the key least recently tried, so a key under
// attack keeps its drained bucket while a spray of new keys passes through,
// as long as it keeps being tried (a refused try counts).
func TestThrottleBoundKeepsKeysInUse(t *testing.T) {
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := accounts.NewThrottle(accounts.Limit{Burst: 1, Interval: time.Hour}, c.Now)
	accounts.SetThrottleMax(th, 4)
	if w := th.Take("victim"); w != 0 {
		t.Fatalf("first try refused: wait %v", w)
	}
	for i := range 50 {
		th.Take(fmt.Sprint("spray-", i))
		if w := th.Take("victim"); w == 0 {
			t.Fatalf("after %d sprayed keys the drained key got a fresh bucket", i+1)
		}
		if n := accounts.ThrottleKeys(th); n > 4 {
			t.Fatalf("%d keys held, bound 4", n)
		}
	}
}

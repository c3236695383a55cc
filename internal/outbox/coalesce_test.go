package outbox

import (
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
)

// Past maxKeys keys, an event with a new key is refused (the webhook counts
// it as dropped) while the keys already tracked keep coalescing, and a key
// that went quiet frees its place.
func TestCoalescerKeyLimit(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	c := newCoalescer(time.Minute, 2)
	ev := func(ip string) events.Event {
		return events.Event{Type: events.SignInThrottled, Time: t0, Data: map[string]any{"client_ip": ip}}
	}
	for _, tc := range []struct {
		ip        string
		at        time.Duration
		send      int
		leads, ok bool
	}{
		{"192.0.2.1", 0, 1, true, true},
		{"192.0.2.2", 0, 1, true, true},
		{"192.0.2.3", 0, 0, false, false}, // a third key: refused
		{"192.0.2.1", time.Second, 0, false, true},
		{"192.0.2.3", time.Minute, 0, false, false}, // .2 ended quiet but is not swept yet
	} {
		send, leads, ok := c.add(ev(tc.ip), t0.Add(tc.at))
		if len(send) != tc.send || leads != tc.leads || ok != tc.ok {
			t.Fatalf("%s at %v: %d to send, leads %v, ok %v; want %d, %v, %v", tc.ip, tc.at, len(send), leads, ok, tc.send, tc.leads, tc.ok)
		}
	}
	// The sweep sends .1's summary and forgets the quiet .2.
	if s := c.flush(t0.Add(time.Minute), false); len(s) != 1 || s[0].Data[events.DataCount] != 1 {
		t.Fatalf("flush = %v", s)
	}
	if send, leads, ok := c.add(ev("192.0.2.3"), t0.Add(time.Minute)); len(send) != 1 || !leads || !ok {
		t.Fatalf("after the sweep: %v, %v, %v", send, leads, ok)
	}
	if len(c.windows) != 2 {
		t.Errorf("%d keys tracked, want 2", len(c.windows))
	}
}

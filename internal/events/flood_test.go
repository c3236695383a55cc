package events_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/webhook"
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

// decoded is a delivered event as a receiver parses it.
type decoded struct {
	ID     string         `json:"id"`
	Type   string         `json:"type"`
	Time   time.Time      `json:"time"`
	UserID string         `json:"user_id"`
	Data   map[string]any `json:"data"`
}

// decodeAll parses and verifies deliveries signed around now.
func decodeAll(t *testing.T, ds []delivery, now time.Time) []decoded {
	t.Helper()
	out := make([]decoded, 0, len(ds))
	for _, d := range ds {
		var ev decoded
		if err := json.Unmarshal(d.body, &ev); err != nil {
			t.Fatalf("body %s: %v", d.body, err)
		}
		if err := webhook.Key(secret).Verify(d.header, d.body, now, webhook.WithTolerance(time.Hour)); err != nil {
			t.Fatalf("delivery %s: %v", ev.ID, err)
		}
		out = append(out, ev)
	}
	return out
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

// Issue 8, finding 3: a flood of signin.throttled into a receiver that
// hangs must not cost a single lifecycle event, and the drops are counted
// by type.
func TestFloodNeverDropsLifecycleEvents(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			<-release // the receiver hangs while the flood comes in
		}
		w.WriteHeader(http.StatusNoContent)
	})
	var mu sync.Mutex
	onDrop := map[string]int{}
	h, _ := startHook(t, events.WebhookConfig{URL: rc.URL, QueueSize: 50, NoisyQueueSize: 20, OnDrop: func(typ string) {
		mu.Lock()
		onDrop[typ]++
		mu.Unlock()
	}})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	em := events.NewEmitter(zap.NewNop(), h)

	// 5000 throttled sign-ins from 500 addresses (so coalescing alone
	// cannot absorb them), with the lifecycle events in the middle of it.
	const noisy, ips = 5000, 500
	var want []string
	for i := range noisy {
		em.Emit(events.Event{Type: events.SignInThrottled, ClientID: "app", Data: map[string]any{"client_ip": fmt.Sprintf("198.51.100.%d", i%ips)}})
		if i%200 == 0 {
			ev := events.Event{ID: fmt.Sprintf("life-%d", i), Type: lifecycle[(i/200)%len(lifecycle)], UserID: "u1"}
			want = append(want, ev.ID)
			em.Emit(ev)
		}
	}
	close(release)
	stop(t, h)

	got := decodeAll(t, rc.deliveries(), time.Now())
	var gotLife []string
	counted := 0
	for _, ev := range got {
		if events.Noisy(ev.Type) {
			counted += int(ev.Data["count"].(float64))
		} else {
			gotLife = append(gotLife, ev.ID)
		}
	}
	if !slices.Equal(gotLife, want) {
		t.Fatalf("lifecycle events delivered %v, want all %d in order: %v", gotLife, len(want), want)
	}
	by := h.DroppedByType()
	if len(by) != 1 || by[events.SignInThrottled] == 0 {
		t.Errorf("dropped by type %v, want only signin.throttled", by)
	}
	mu.Lock()
	if onDrop[events.SignInThrottled] != int(by[events.SignInThrottled]) || len(onDrop) != 1 {
		t.Errorf("OnDrop saw %v, Dropped %v", onDrop, by)
	}
	mu.Unlock()
	// Whatever was not dropped is accounted for in the counts delivered.
	if counted == 0 || counted > noisy {
		t.Errorf("noisy events delivered stand for %d sign-ins of %d", counted, noisy)
	}
	t.Logf("%d deliveries: %d lifecycle, %d noisy standing for %d of %d throttled sign-ins; %d dropped",
		len(got), len(gotLife), len(got)-len(gotLife), counted, noisy, h.Dropped())
}

// Lifecycle events queued behind noisy ones are still sent first.
func TestLifecycleSentBeforeNoisy(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	h, err := events.NewWebhook(events.WebhookConfig{URL: rc.URL, Secret: secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		h.Enqueue(events.Event{Type: events.SignInThrottled, Data: map[string]any{"client_ip": fmt.Sprint("192.0.2.", i)}})
	}
	h.Enqueue(events.Event{Type: events.GuestUpgraded})
	h.Enqueue(events.Event{Type: events.UserDeleted})
	h.Start()
	stop(t, h)
	var types []string
	for _, ev := range decodeAll(t, rc.deliveries(), time.Now()) {
		types = append(types, ev.Type)
	}
	if len(types) != 7 || types[0] != events.GuestUpgraded || types[1] != events.UserDeleted {
		t.Errorf("delivery order %v, want the lifecycle events first", types)
	}
}

// Per key, the first throttled sign-in goes out at once, the rest of the
// interval is summed up in one summary, and a quiet interval resets that.
func TestCoalescing(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	clk := newClock(t0)
	h, err := events.NewWebhook(events.WebhookConfig{URL: rc.URL, Secret: secret, Now: clk.Now, CoalesceInterval: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	throttled := func(ip string, at time.Time) {
		t.Helper()
		if !h.Enqueue(events.Event{Type: events.SignInThrottled, ClientID: "app", Time: at, Data: map[string]any{"client_ip": ip, "retry_after_s": 30}}) {
			t.Fatal("Enqueue refused")
		}
	}
	for i := range 1000 {
		throttled("192.0.2.1", t0.Add(time.Duration(i)*time.Millisecond))
	}
	throttled("192.0.2.2", t0) // another key: its own first event
	clk.Advance(time.Minute)
	throttled("192.0.2.1", t0.Add(time.Minute)) // ends the first interval; counted in the next
	clk.Advance(time.Minute)
	clk.Advance(time.Minute)
	throttled("192.0.2.2", t0.Add(3*time.Minute)) // after a quiet interval: sent at once
	h.Start()
	stop(t, h) // sends the summary of what is still being counted

	type row struct {
		ip    string
		count float64
		since string
	}
	var got []row
	for _, ev := range decodeAll(t, rc.deliveries(), clk.Now()) {
		since, _ := ev.Data["since"].(string)
		got = append(got, row{ev.Data["client_ip"].(string), ev.Data["count"].(float64), since})
		if ev.Type != events.SignInThrottled || ev.Data["retry_after_s"] != float64(30) {
			t.Errorf("event %+v lost its type or data", ev)
		}
	}
	want := []row{
		{"192.0.2.1", 1, ""},
		{"192.0.2.2", 1, ""},
		{"192.0.2.1", 999, "2025-01-02T03:04:05.001Z"},
		{"192.0.2.2", 1, ""},
		{"192.0.2.1", 1, "2025-01-02T03:05:05Z"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("deliveries\n got %v\nwant %v", got, want)
	}
	if h.Dropped() != 0 {
		t.Errorf("Dropped = %d", h.Dropped())
	}
}

// Without further events, an interval's summary still goes out once it
// ends, without waiting for Stop.
func TestCoalescedSummaryFlushedByTimer(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	h, _ := startHook(t, events.WebhookConfig{URL: rc.URL, CoalesceInterval: 20 * time.Millisecond})
	for range 3 {
		h.Enqueue(events.Event{Type: events.SignInThrottled, Data: map[string]any{"client_ip": "192.0.2.9"}})
	}
	deadline := time.Now().Add(10 * time.Second)
	for rc.hits.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := decodeAll(t, rc.deliveries(), time.Now())
	if len(got) != 2 || got[0].Data["count"] != float64(1) || got[1].Data["count"] != float64(2) {
		t.Fatalf("deliveries %+v, want the first event then a summary counting 2", got)
	}
}

// A flood from more addresses than the webhook tracks drops the excess
// and counts it; nothing blocks.
func TestNoisyDropsCountedWhenReceiverHangs(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(int, http.ResponseWriter) { <-release })
	h, logs := startHook(t, events.WebhookConfig{URL: rc.URL, NoisyQueueSize: 3})
	t.Cleanup(func() { close(release) })
	var refused atomic.Int64
	for i := range 100 {
		if !h.Enqueue(events.Event{Type: events.SignInThrottled, Data: map[string]any{"client_ip": fmt.Sprint("203.0.113.", i)}}) {
			refused.Add(1)
		}
	}
	// One in flight, three queued.
	if d := h.DroppedByType()[events.SignInThrottled]; d < 96 || d > 97 || uint64(refused.Load()) != d {
		t.Errorf("dropped %d (refused %d), want 96 or 97", d, refused.Load())
	}
	warn := logs.FilterMessageSnippet("queue full").All()
	if len(warn) != 1 || warn[0].ContextMap()["type"] != events.SignInThrottled {
		t.Errorf("queue-full warnings %v", warn)
	}
	if !h.Enqueue(events.Event{Type: events.GuestUpgraded}) {
		t.Error("a lifecycle event was refused while only the noisy queue is full")
	}
	if strings.Contains(fmt.Sprint(h.DroppedByType()), events.GuestUpgraded) {
		t.Error("a lifecycle event was dropped")
	}
}

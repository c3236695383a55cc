package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/outbox"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
	"github.com/guestauth/caddy-guestauth/webhook"
)

var (
	bg     = context.Background()
	secret = []byte("outbox-test-secret")
)

// backends are the stores the delivery tests run on: every backend has
// an outbox, and the deliverer is the same for all.
var backends = []struct {
	name string
	open func(t *testing.T) storage.Backend
}{
	{"bolt", func(t *testing.T) storage.Backend {
		st, err := bolt.Open(filepath.Join(t.TempDir(), "outbox.db"), bolt.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
	{"postgres", func(t *testing.T) storage.Backend {
		st, err := postgres.Open(bg, pgtest.DSN(t), postgres.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}},
}

// eachBackend runs fn on every backend.
func eachBackend(t *testing.T, fn func(t *testing.T, st storage.Backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.open(t))
		})
	}
}

// delivery is one request as the receiver saw it.
type delivery struct {
	header http.Header
	body   []byte
}

// receiver answers attempt n (1-based) with respond(n, w) and records
// every request.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []delivery
	hits atomic.Int64
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter)) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body})
		rc.mu.Unlock()
		respond(int(rc.hits.Add(1)), w)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func status(code int) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) { w.WriteHeader(code) }
}

// decoded are the verified events delivered so far.
func (rc *receiver) decoded(t *testing.T) []events.Event {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := make([]events.Event, 0, len(rc.got))
	for _, d := range rc.got {
		var ev events.Event
		if err := json.Unmarshal(d.body, &ev); err != nil {
			t.Fatalf("body %s: %v", d.body, err)
		}
		if err := webhook.Key(secret).Verify(d.header, d.body, time.Now(), webhook.WithTolerance(time.Hour)); err != nil {
			t.Fatalf("delivery %s: %v", ev.ID, err)
		}
		if d.header.Get(webhook.HeaderID) != ev.ID {
			t.Fatalf("webhook-id %q for event %s", d.header.Get(webhook.HeaderID), ev.ID)
		}
		out = append(out, ev)
	}
	return out
}

func tiny(int) time.Duration { return time.Millisecond }

type setup struct {
	hook    events.WebhookConfig
	box     outbox.Config
	noStart bool
}

// start makes an Outbox on st posting to url, with tiny backoffs and
// polls unless set, started unless noStart; it is stopped at the test's
// end. It returns the log and the drops by type.
func start(t *testing.T, st storage.Backend, url string, s setup) (*outbox.Outbox, *observer.ObservedLogs, *drops) {
	t.Helper()
	s.hook.URL, s.hook.Secret = url, secret
	if s.hook.Backoff == nil {
		s.hook.Backoff = tiny
	}
	wh, err := events.NewWebhook(s.hook, nil)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	d := &drops{by: map[string]int{}}
	s.box.Store, s.box.Webhook, s.box.Logger, s.box.OnDrop = st, wh, zap.New(core), d.add
	if s.box.Poll == 0 {
		s.box.Poll = 10 * time.Millisecond
	}
	o, err := outbox.New(s.box)
	if err != nil {
		t.Fatal(err)
	}
	if !s.noStart {
		o.Start()
	}
	t.Cleanup(func() { _ = o.Stop(bg) })
	return o, logs, d
}

type drops struct {
	mu sync.Mutex
	by map[string]int
}

func (d *drops) add(typ string) {
	d.mu.Lock()
	d.by[typ]++
	d.mu.Unlock()
}

func (d *drops) get() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make(map[string]int, len(d.by))
	for k, v := range d.by {
		out[k] = v
	}
	return out
}

// eventually waits up to 20s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not after 20s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// left is how many records of o's webhook the store still holds.
func left(t *testing.T, st storage.Backend, target string) int {
	t.Helper()
	n, err := st.OutboxLen(bg, target)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// An event stored with its write and one stored after it happened are both
// delivered, signed, under the id they were stored with, and their records
// then deleted.
func TestDeliversStoredAndLateEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		rc := newReceiver(t, status(http.StatusNoContent))
		o, _, d := start(t, st, rc.URL, setup{})
		// A write's event: staged, stored by CreateUser in its transaction.
		var staged []events.Event
		ev := func(storage.TxResult) ([]storage.OutboxRecord, error) {
			evs, recs, err := o.Stage([]events.Event{{Type: events.GuestCreated, UserID: "u1"}})
			staged = evs
			return recs, err
		}
		u := &model.User{ID: "u1", Name: "guest_u1", Tag: model.TagGuest, CreatedAt: time.Now(), UpdatedAt: time.Now()}
		if err := st.CreateUser(bg, u, nil, nil, ev); err != nil {
			t.Fatal(err)
		}
		if len(staged) != 1 || staged[0].ID == "" {
			t.Fatalf("staged %+v", staged)
		}
		o.Nudge() // as the observer does for an event stored with its write
		// An event with no write of its own.
		if !o.Enqueue(events.Event{ID: "late-1", Type: events.RefreshReuseDetected, ClientID: "app"}) {
			t.Fatal("Enqueue refused")
		}
		eventually(t, "both delivered", func() bool { return rc.hits.Load() >= 2 })
		got := rc.decoded(t)
		ids := []string{got[0].ID, got[1].ID}
		slices.Sort(ids)
		want := []string{"late-1", staged[0].ID}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("delivered %v; want %v", ids, want)
		}
		eventually(t, "records deleted", func() bool { return left(t, st, o.Target()) == 0 })
		if n := rc.hits.Load(); n != 2 {
			t.Fatalf("%d deliveries of 2 events", n)
		}
		if len(d.get()) != 0 {
			t.Fatalf("drops %v", d.get())
		}
	})
}

// A record that fails is retried with backoff, same id and body, until
// the receiver takes it; the attempt count survives in the store.
func TestRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		rc := newReceiver(t, func(n int, w http.ResponseWriter) {
			if n <= 2 {
				w.WriteHeader(http.StatusInternalServerError + n - 1) // 500, then 501
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		var mu sync.Mutex
		var waits []int
		o, logs, _ := start(t, st, rc.URL, setup{hook: events.WebhookConfig{Backoff: func(n int) time.Duration {
			mu.Lock()
			waits = append(waits, n)
			mu.Unlock()
			return time.Millisecond
		}}})
		o.Enqueue(events.Event{Type: events.GuestCreated, UserID: "u1"})
		eventually(t, "delivered", func() bool { return rc.hits.Load() >= 3 && left(t, st, o.Target()) == 0 })
		rc.mu.Lock()
		got := slices.Clone(rc.got)
		rc.mu.Unlock()
		if len(got) != 3 || got[0].header.Get(webhook.HeaderID) != got[2].header.Get(webhook.HeaderID) || string(got[0].body) != string(got[2].body) {
			t.Fatalf("%d attempts; a retry changed the id or body", len(got))
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(waits, []int{1, 2}) {
			t.Errorf("Backoff called with %v, want [1 2]", waits)
		}
		if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
			t.Errorf("%d error logs for a delivery that succeeded", n)
		}
	})
}

// After MaxAttempts failures an event is given up (logged without its
// body) and deleted; a refusal (4xx, a redirect) is not retried at all; a
// Retry-After wins over the backoff.
func TestGiveUpRefusalAndRetryAfter(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		rc := newReceiver(t, status(http.StatusServiceUnavailable))
		o, logs, _ := start(t, st, rc.URL, setup{hook: events.WebhookConfig{MaxAttempts: 3}})
		o.Enqueue(events.Event{Type: events.SessionRevoked, UserID: "u1", Data: map[string]any{"cause": "logout-marker"}})
		eventually(t, "given up", func() bool { return logs.FilterMessageSnippet("giving up").Len() == 1 })
		eventually(t, "deleted", func() bool { return left(t, st, o.Target()) == 0 })
		if n := rc.hits.Load(); n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
		e := logs.FilterMessageSnippet("giving up").All()[0]
		if f := e.ContextMap(); f["attempt"] != int64(3) || f["event_id"] == "" {
			t.Errorf("give-up fields %v", f)
		}
		for _, e := range logs.All() {
			for _, f := range e.Context {
				if strings.Contains(f.String, "logout-marker") || strings.Contains(f.String, "u1") {
					t.Errorf("log %q field %s carries the event body", e.Message, f.Key)
				}
			}
		}

		for _, code := range []int{http.StatusBadRequest, http.StatusFound} {
			rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
				w.Header().Set("Location", "/elsewhere")
				w.WriteHeader(code)
			})
			o, logs, _ := start(t, st, rc.URL, setup{})
			o.Enqueue(events.Event{Type: events.GuestCreated})
			eventually(t, "refused", func() bool { return logs.FilterMessageSnippet("refused").Len() == 1 && left(t, st, o.Target()) == 0 })
			time.Sleep(50 * time.Millisecond)
			if n := rc.hits.Load(); n != 1 {
				t.Errorf("status %d: %d attempts, want 1", code, n)
			}
		}

		rc = newReceiver(t, func(n int, w http.ResponseWriter) {
			if n == 1 {
				w.Header().Set("Retry-After", "0")
				w.WriteHeader(http.StatusTooManyRequests)
				return
			}
			w.WriteHeader(http.StatusOK)
		})
		// A Backoff of an hour: the retry only comes quickly if Retry-After wins.
		o, _, _ = start(t, st, rc.URL, setup{hook: events.WebhookConfig{Backoff: func(int) time.Duration { return time.Hour }}})
		o.Enqueue(events.Event{Type: events.GuestCreated})
		eventually(t, "retried at once", func() bool { return rc.hits.Load() == 2 })
	})
}

// Lifecycle events stored after noisy ones are still delivered first.
func TestLifecycleBeforeNoisy(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		rc := newReceiver(t, status(http.StatusOK))
		o, _, _ := start(t, st, rc.URL, setup{noStart: true, box: outbox.Config{Batch: 1}})
		for i := range 5 {
			o.Enqueue(events.Event{Type: events.SignInThrottled, Data: map[string]any{"client_ip": fmt.Sprint("192.0.2.", i)}})
		}
		o.Enqueue(events.Event{Type: events.GuestUpgraded})
		o.Enqueue(events.Event{Type: events.UserDeleted})
		eventually(t, "all stored", func() bool { return left(t, st, o.Target()) == 7 })
		o.Start()
		eventually(t, "all delivered", func() bool { return rc.hits.Load() == 7 })
		var types []string
		for _, ev := range rc.decoded(t) {
			types = append(types, ev.Type)
		}
		if types[0] == events.SignInThrottled || types[1] == events.SignInThrottled {
			t.Errorf("delivery order %v, want the lifecycle events first", types)
		}
	})
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

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

// storedEvents decodes every record target has in st (claiming them all:
// for a test whose outbox is stopped).
func storedEvents(t *testing.T, st storage.Backend, target string) []events.Event {
	t.Helper()
	recs, err := st.OutboxClaim(bg, target, time.Now().Add(1000*time.Hour), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Event
	for _, r := range recs {
		var ev events.Event
		if err := json.Unmarshal(r.Body, &ev); err != nil || ev.ID != r.ID || ev.Type != r.Type || r.Noisy != events.Noisy(ev.Type) {
			t.Fatalf("record %+v: %v", r, err)
		}
		out = append(out, ev)
	}
	return out
}

// Per key, the first throttled sign-in is stored at once, the rest of the
// interval summed up in one summary, and a quiet interval resets that;
// Stop stores what is still being counted.
func TestCoalescing(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
		clk := &clock{t: t0}
		o, _, d := start(t, st, "http://127.0.0.1:9/never", setup{noStart: true, box: outbox.Config{Now: clk.Now, CoalesceInterval: time.Minute}})
		throttled := func(ip string, at time.Time) {
			t.Helper()
			if !o.Enqueue(events.Event{Type: events.SignInThrottled, ClientID: "app", Time: at, Data: map[string]any{"client_ip": ip, "retry_after_s": 30}}) {
				t.Fatal("Enqueue refused")
			}
		}
		for i := range 1000 {
			throttled("192.0.2.1", t0.Add(time.Duration(i)*time.Millisecond))
		}
		throttled("192.0.2.2", t0) // another key: its own first event
		clk.Advance(time.Minute)
		throttled("192.0.2.1", t0.Add(time.Minute)) // ends the first interval; counted in the next
		clk.Advance(2 * time.Minute)
		throttled("192.0.2.2", t0.Add(3*time.Minute)) // after a quiet interval: sent at once
		if err := o.Stop(bg); err != nil {            // stores the summary of what is still being counted
			t.Fatal(err)
		}
		type row struct {
			ip    string
			count float64
			since string
		}
		var got []row
		for _, ev := range storedEvents(t, st, o.Target()) {
			since, _ := ev.Data["since"].(string)
			got = append(got, row{ev.Data["client_ip"].(string), ev.Data["count"].(float64), since})
			if ev.Type != events.SignInThrottled || ev.Data["retry_after_s"] != float64(30) {
				t.Errorf("event %+v lost its type or data", ev)
			}
		}
		want := []row{
			{"192.0.2.1", 1, ""},
			{"192.0.2.1", 1, "2025-01-02T03:05:05Z"},
			{"192.0.2.1", 999, "2025-01-02T03:04:05.001Z"},
			{"192.0.2.2", 1, ""},
			{"192.0.2.2", 1, ""},
		}
		cmp := func(a, b row) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) }
		slices.SortFunc(got, cmp)
		slices.SortFunc(want, cmp)
		if !slices.Equal(got, want) {
			t.Errorf("stored\n got %v\nwant %v", got, want)
		}
		if len(d.get()) != 0 {
			t.Errorf("drops %v", d.get())
		}
		if o.Enqueue(events.Event{Type: events.GuestCreated}) {
			t.Error("Enqueue accepted an event after Stop")
		}
	})
}

// Without further events, an interval's summary still goes out once it
// ends, without waiting for Stop.
func TestCoalescedSummaryFlushedByTimer(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		rc := newReceiver(t, status(http.StatusOK))
		o, _, _ := start(t, st, rc.URL, setup{box: outbox.Config{CoalesceInterval: 20 * time.Millisecond}})
		for range 3 {
			o.Enqueue(events.Event{Type: events.SignInThrottled, Data: map[string]any{"client_ip": "192.0.2.9"}})
		}
		eventually(t, "two deliveries", func() bool { return rc.hits.Load() >= 2 })
		got := rc.decoded(t)
		counts := []float64{got[0].Data["count"].(float64), got[1].Data["count"].(float64)}
		slices.Sort(counts)
		if len(got) != 2 || counts[0] != 1 || counts[1] != 2 {
			t.Fatalf("deliveries %+v, want the first event and a summary counting 2", got)
		}
	})
}

// gatedStore holds every OutboxPut until release is closed (a store that
// is slow to answer), and fails the first failPuts of them.
type gatedStore struct {
	storage.Backend
	release  chan struct{}
	failPuts atomic.Int32
	puts     atomic.Int32
}

func (g *gatedStore) OutboxPut(ctx context.Context, recs []storage.OutboxRecord) error {
	g.puts.Add(1)
	select {
	case <-g.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	if g.failPuts.Add(-1) >= 0 {
		return errors.New("test: the store refused")
	}
	return g.Backend.OutboxPut(ctx, recs)
}

// A flood of throttled sign-ins into a store that cannot keep up never
// blocks Enqueue nor costs a lifecycle event: the excess noisy events are
// dropped and counted by type, and only they.
func TestFloodNeverDropsLifecycleEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		rc := newReceiver(t, status(http.StatusNoContent))
		gs := &gatedStore{Backend: st, release: make(chan struct{})}
		o, _, d := start(t, gs, rc.URL, setup{})
		const noisy, ips = 5000, 500
		var want []string
		begin := time.Now()
		for i := range noisy {
			o.Enqueue(events.Event{Type: events.SignInThrottled, ClientID: "app", Data: map[string]any{"client_ip": fmt.Sprintf("198.51.100.%d", i%ips)}})
			if i%200 == 0 {
				ev := events.Event{ID: fmt.Sprintf("life-%d", i), Type: []string{events.GuestCreated, events.GuestUpgraded, events.UserDeleted, events.RefreshReuseDetected}[(i/200)%4]}
				want = append(want, ev.ID)
				if !o.Enqueue(ev) {
					t.Fatalf("lifecycle event %s refused", ev.ID)
				}
			}
		}
		if took := time.Since(begin); took > 2*time.Second {
			t.Fatalf("%d Enqueues took %v while the store hangs", noisy, took)
		}
		close(gs.release)
		eventually(t, "lifecycle events delivered", func() bool {
			n := 0
			for _, ev := range rc.decoded(t) {
				if slices.Contains(want, ev.ID) {
					n++
				}
			}
			return n == len(want)
		})
		by := d.get()
		if len(by) != 1 || by[events.SignInThrottled] == 0 {
			t.Errorf("dropped by type %v, want only signin.throttled", by)
		}
		t.Logf("%d noisy events dropped while the store hung", by[events.SignInThrottled])
	})
}

// A flood of throttled sign-ins from many addresses while the receiver
// hangs costs no lifecycle event, and once the receiver answers again the
// lifecycle events are delivered before any of the noisy ones waiting with
// them (the property the in-memory queue had, now the outbox's claim
// order): drops, if any, are only noisy.
func TestFloodDeliversLifecycleFirst(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		release := make(chan struct{})
		var once sync.Once
		up := func() { once.Do(func() { close(release) }) }
		rc := newReceiver(t, func(n int, w http.ResponseWriter) {
			if n == 1 {
				<-release // the receiver hangs while the flood comes in
			}
			w.WriteHeader(http.StatusNoContent)
		})
		t.Cleanup(up) // before the receiver closes: Close waits for the held request
		// One record claimed at a time, so the order of deliveries is the
		// order of claims; an attempt timeout longer than the hold.
		o, _, d := start(t, st, rc.URL, setup{hook: events.WebhookConfig{Timeout: time.Minute}, box: outbox.Config{Batch: 1}})
		begin := time.Now()
		// 5000 throttled sign-ins from 500 addresses (so coalescing alone
		// cannot absorb them), lifecycle events in the middle of it.
		const noisy, ips = 5000, 500
		var want []string
		for i := range noisy {
			o.Enqueue(events.Event{Type: events.SignInThrottled, ClientID: "app", Data: map[string]any{"client_ip": fmt.Sprintf("198.51.100.%d", i%ips)}})
			if i%200 == 0 {
				ev := events.Event{ID: fmt.Sprintf("life-%d", i), Type: []string{events.GuestCreated, events.GuestUpgraded, events.UserDeleted, events.RefreshReuseDetected}[(i/200)%4], UserID: "u1"}
				want = append(want, ev.ID)
				if !o.Enqueue(ev) {
					t.Fatalf("lifecycle event %s refused", ev.ID)
				}
			}
		}
		// Every event is stored (or dropped, counted) before the receiver
		// answers: the first of each address's burst, and the lifecycle
		// events; the rest are being coalesced.
		eventually(t, "the first delivery held", func() bool { return rc.hits.Load() >= 1 })
		eventually(t, "the flood stored", func() bool {
			n := left(t, st, o.Target())
			for _, c := range d.get() {
				n += c
			}
			return n == ips+len(want)
		})
		if n := rc.hits.Load(); n != 1 {
			t.Fatalf("%d deliveries while the receiver hung on the first (the flood took %v to store)", n, time.Since(begin))
		}
		if stored := ips - d.get()[events.SignInThrottled]; stored < 2 {
			t.Fatalf("only %d noisy events stored: nothing for the lifecycle events to overtake", stored)
		}
		up()
		eventually(t, "lifecycle events delivered", func() bool {
			n := 0
			for _, ev := range rc.decoded(t) {
				if slices.Contains(want, ev.ID) {
					n++
				}
			}
			return n == len(want)
		})
		got := rc.decoded(t)
		var life []string
		for i, ev := range got {
			if !events.Noisy(ev.Type) {
				life = append(life, ev.ID)
				continue
			}
			// The first delivery is the one the receiver held, whatever it was.
			if i > 0 && len(life) < len(want) {
				t.Fatalf("delivery %d is noisy while %d lifecycle events were still waiting", i+1, len(want)-len(life))
			}
		}
		slices.Sort(life)
		slices.Sort(want)
		if !slices.Equal(life, want) {
			t.Fatalf("lifecycle events delivered %v, want all %d: %v", life, len(want), want)
		}
		if by := d.get(); len(by) > 1 || (len(by) == 1 && by[events.SignInThrottled] == 0) {
			t.Errorf("dropped by type %v, want only signin.throttled", by)
		}
		t.Logf("%d deliveries so far; %d noisy events dropped", len(got), d.get()[events.SignInThrottled])
	})
}

// An event whose store fails is stored again with backoff; one that never
// can be is dropped and counted once its attempts are spent.
func TestLateEventStoreRetried(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		rc := newReceiver(t, status(http.StatusOK))
		gs := &gatedStore{Backend: st, release: make(chan struct{})}
		close(gs.release)
		gs.failPuts.Store(2)
		o, _, d := start(t, gs, rc.URL, setup{hook: events.WebhookConfig{MaxAttempts: 3}})
		o.Enqueue(events.Event{ID: "reuse-1", Type: events.RefreshReuseDetected})
		eventually(t, "delivered after two failed stores", func() bool { return rc.hits.Load() == 1 })
		gs.failPuts.Store(3)
		o.Enqueue(events.Event{ID: "reuse-2", Type: events.RefreshReuseDetected})
		eventually(t, "dropped after three", func() bool { return d.get()[events.RefreshReuseDetected] == 1 })
		if got := rc.decoded(t); len(got) != 1 || got[0].ID != "reuse-1" {
			t.Fatalf("delivered %+v", got)
		}
	})
}

// Stop gives up at its deadline on an attempt the receiver holds; the
// record stays, and the next process using the store delivers it after
// its lease, under the same id.
func TestStopLeavesRecordForTheNext(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		release := make(chan struct{})
		var once sync.Once
		up := func() { once.Do(func() { close(release) }) }
		t.Cleanup(up)
		// Holds every request until up, then answers 200.
		rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
			<-release
			w.WriteHeader(http.StatusOK)
		})
		a, _, _ := start(t, st, rc.URL, setup{box: outbox.Config{Lease: 300 * time.Millisecond}})
		a.Enqueue(events.Event{ID: "e-1", Type: events.GuestCreated})
		eventually(t, "attempt in flight", func() bool { return rc.hits.Load() == 1 })
		ctx, cancel := context.WithTimeout(bg, 20*time.Millisecond)
		defer cancel()
		begin := time.Now()
		if err := a.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v (nothing was being stored)", err)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Fatalf("Stop took %v", d)
		}
		if n := left(t, st, a.Target()); n != 1 {
			t.Fatalf("%d records left, want the one in flight", n)
		}
		up()
		// The next process with the same URL delivers it once the lease
		// of the one that stopped ends.
		b, _, _ := start(t, st, rc.URL, setup{})
		if b.Target() != a.Target() {
			t.Fatal("same URL, different target")
		}
		eventually(t, "delivered by the next process", func() bool { return left(t, st, b.Target()) == 0 })
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, d := range rc.got {
			if id := d.header.Get(webhook.HeaderID); id != "e-1" {
				t.Fatalf("delivery id %q, want e-1", id)
			}
		}
	})
}

// Records older than MaxAge, and the oldest beyond MaxRows, are dropped
// and counted.
func TestTrimCountsDrops(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, st storage.Backend) {
		rc := newReceiver(t, status(http.StatusServiceUnavailable))
		wh, err := events.NewWebhook(events.WebhookConfig{URL: rc.URL, Secret: secret}, nil)
		if err != nil {
			t.Fatal(err)
		}
		old := time.Now().Add(-48 * time.Hour)
		var recs []storage.OutboxRecord
		for i := range 5 {
			recs = append(recs, storage.OutboxRecord{ID: fmt.Sprint("e", i), Type: events.GuestCreated, Target: wh.Target(), Body: []byte(`{}`), CreatedAt: old.Add(time.Duration(i) * 30 * time.Hour)})
		}
		if err := st.OutboxPut(bg, recs); err != nil {
			t.Fatal(err)
		}
		// e0 is 48h old; of e1..e4 (created after the cutoff), two beyond
		// MaxRows 2 go too.
		_, _, d := start(t, st, rc.URL, setup{box: outbox.Config{MaxRows: 2, MaxAge: 24 * time.Hour}})
		eventually(t, "trimmed", func() bool { return d.get()[events.GuestCreated] == 3 })
	})
}

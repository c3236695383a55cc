package events_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/webhook"
)

var secret = []byte("test-webhook-secret")

// delivery is one request as the receiver saw it.
type delivery struct {
	header http.Header
	method string
	body   []byte
}

// receiver is an httptest server answering attempt n (1-based) with
// respond(n, w); it records every request.
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
		rc.got = append(rc.got, delivery{header: r.Header.Clone(), method: r.Method, body: body})
		rc.mu.Unlock()
		respond(int(rc.hits.Add(1)), w)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

func status(code int) func(int, http.ResponseWriter) {
	return func(_ int, w http.ResponseWriter) { w.WriteHeader(code) }
}

// tiny is a Backoff that keeps tests fast.
func tiny(int) time.Duration { return time.Millisecond }

func startHook(t *testing.T, cfg events.WebhookConfig) (*events.Webhook, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	if cfg.Secret == nil {
		cfg.Secret = secret
	}
	if cfg.Backoff == nil {
		cfg.Backoff = tiny
	}
	h, err := events.NewWebhook(cfg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	h.Start()
	t.Cleanup(func() { _ = h.Stop(context.Background()) })
	return h, logs
}

// stop drains h, failing the test if that takes more than a few seconds.
func stop(t *testing.T, h *events.Webhook) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func TestDeliveryHeadersAndSignature(t *testing.T) {
	rc := newReceiver(t, status(http.StatusNoContent))
	h, _ := startHook(t, events.WebhookConfig{URL: rc.URL})

	ev := events.Event{
		ID:       uuid.NewString(),
		Type:     events.GuestUpgraded,
		Time:     time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600)),
		UserID:   "u1",
		ClientID: "app",
		Data:     map[string]any{"old_name": "guest-1", "new_name": "alice"},
	}
	if !h.Enqueue(ev) {
		t.Fatal("Enqueue refused")
	}
	stop(t, h)

	got := rc.deliveries()
	if len(got) != 1 {
		t.Fatalf("got %d deliveries, want 1", len(got))
	}
	d := got[0]
	for k, want := range map[string]string{
		"Content-Type": "application/json",
		"User-Agent":   "guestauth-webhook",
		"webhook-id":   ev.ID,
	} {
		if v := d.header.Get(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	// The X-Guest-Auth-* scheme is gone: its delivery id was outside the
	// signature.
	for k := range d.header {
		if strings.HasPrefix(strings.ToLower(k), "x-guest-auth-") {
			t.Errorf("header %s is still sent", k)
		}
	}
	if d.method != http.MethodPost {
		t.Errorf("method %s", d.method)
	}
	ts := d.header.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Fatalf("webhook-timestamp %q is not the Unix time now", ts)
	}
	// The signed content is id.timestamp.body, per the Standard Webhooks
	// specification, computed here with the standard library alone.
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ev.ID + "." + ts + "."))
	m.Write(d.body)
	if sig, want := d.header.Get("webhook-signature"), "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)); sig != want {
		t.Errorf("webhook-signature %q, want %q", sig, want)
	}
	if err := webhook.Key(secret).Verify(d.header, d.body, time.Now()); err != nil {
		t.Errorf("Verify refused a genuine delivery: %v", err)
	}
	// A captured delivery replayed under another id (to get past a
	// receiver's de-duplication) no longer verifies.
	replay := d.header.Clone()
	replay.Set("webhook-id", uuid.NewString())
	if err := webhook.Key(secret).Verify(replay, d.body, time.Now()); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("Verify of the delivery under a new id = %v", err)
	}
	tampered := []byte(strings.Replace(string(d.body), "alice", "mallory", 1))
	if err := webhook.Key(secret).Verify(d.header, tampered, time.Now()); !errors.Is(err, webhook.ErrBadSignature) {
		t.Errorf("Verify of a tampered body = %v", err)
	}

	var body webhook.Event
	if err := json.Unmarshal(d.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.ID != ev.ID || body.Type != events.GuestUpgraded || body.UserID != "u1" || body.ClientID != "app" {
		t.Errorf("body %s", d.body)
	}
	if !strings.Contains(string(d.body), `"time":"2025-01-02T02:04:05Z"`) {
		t.Errorf("body %s: want the time in RFC 3339, UTC", d.body)
	}
	if body.Data["old_name"] != "guest-1" || body.Data["new_name"] != "alice" {
		t.Errorf("data %v", body.Data)
	}
}

// Each attempt is signed afresh with the time it is made, so a retry long
// after the first attempt still passes a receiver's tolerance.
func TestRetrySignedWithFreshTimestamp(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	clock := newClock(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	h, _ := startHook(t, events.WebhookConfig{URL: rc.URL, Now: clock.Now, Backoff: func(int) time.Duration {
		clock.Advance(10 * time.Minute)
		return time.Millisecond
	}})
	h.Enqueue(events.Event{Type: events.GuestCreated})
	stop(t, h)

	got := rc.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d attempts, want 2", len(got))
	}
	first, second := got[0].header.Get("webhook-timestamp"), got[1].header.Get("webhook-timestamp")
	if first != "1735787045" || second != "1735787645" {
		t.Errorf("timestamps %q, %q; want the clock at each attempt", first, second)
	}
	if got[0].header.Get("webhook-signature") == got[1].header.Get("webhook-signature") {
		t.Error("the retry reused the first signature")
	}
	if id := got[0].header.Get("webhook-id"); id == "" || got[1].header.Get("webhook-id") != id {
		t.Errorf("webhook-id %q then %q; want the event id on both", id, got[1].header.Get("webhook-id"))
	}
	if err := webhook.Key(secret).Verify(got[1].header, got[1].body, clock.Now()); err != nil {
		t.Errorf("retry: %v", err)
	}
	if err := webhook.Key(secret).Verify(got[0].header, got[0].body, clock.Now()); !errors.Is(err, webhook.ErrStale) {
		t.Errorf("first attempt, replayed 10 minutes on: %v, want ErrStale", err)
	}
}

func TestRetryOn5xxThenSuccess(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError + n - 1) // 500, then 501
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	var mu sync.Mutex
	var waits []int
	h, logs := startHook(t, events.WebhookConfig{URL: rc.URL, Backoff: func(n int) time.Duration {
		mu.Lock()
		waits = append(waits, n)
		mu.Unlock()
		return time.Millisecond
	}})
	h.Enqueue(events.Event{Type: events.GuestCreated, UserID: "u1"})
	stop(t, h)

	got := rc.deliveries()
	if len(got) != 3 {
		t.Fatalf("got %d attempts, want 3", len(got))
	}
	if got[0].header.Get("webhook-id") != got[2].header.Get("webhook-id") || string(got[0].body) != string(got[2].body) {
		t.Error("a retry changed the delivery id or body")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(waits) != 2 || waits[0] != 1 || waits[1] != 2 {
		t.Errorf("Backoff called with %v, want [1 2]", waits)
	}
	if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); n != 0 {
		t.Errorf("%d error logs for a delivery that succeeded", n)
	}
}

func TestNetworkErrorRetried(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	var calls atomic.Int64
	client := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("connection reset")
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
	h, _ := startHook(t, events.WebhookConfig{URL: rc.URL, Client: client})
	h.Enqueue(events.Event{Type: events.GuestCreated})
	stop(t, h)
	if calls.Load() != 2 || rc.hits.Load() != 1 {
		t.Errorf("%d attempts, %d received; want 2 and 1", calls.Load(), rc.hits.Load())
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRetryAfterHonoured(t *testing.T) {
	rc := newReceiver(t, func(n int, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	// A Backoff of an hour: the retry only comes quickly if Retry-After wins.
	h, _ := startHook(t, events.WebhookConfig{URL: rc.URL, Backoff: func(int) time.Duration { return time.Hour }})
	h.Enqueue(events.Event{Type: events.SignInThrottled})
	stop(t, h)
	if n := rc.hits.Load(); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
}

func TestNoRetryOn4xx(t *testing.T) {
	for _, code := range []int{http.StatusBadRequest, http.StatusNotFound, http.StatusFound} {
		rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(code)
		})
		h, logs := startHook(t, events.WebhookConfig{URL: rc.URL})
		h.Enqueue(events.Event{Type: events.GuestCreated})
		stop(t, h)
		if n := rc.hits.Load(); n != 1 {
			t.Errorf("status %d: %d attempts, want 1", code, n)
		}
		if e := logs.FilterLevelExact(zapcore.ErrorLevel).All(); len(e) != 1 || e[0].ContextMap()["status"] != int64(code) {
			t.Errorf("status %d: error logs %v", code, e)
		}
	}
}

func TestGiveUpAfterMaxAttempts(t *testing.T) {
	rc := newReceiver(t, status(http.StatusServiceUnavailable))
	h, logs := startHook(t, events.WebhookConfig{URL: rc.URL, MaxAttempts: 3})
	h.Enqueue(events.Event{Type: events.SessionRevoked, UserID: "u1", Data: map[string]any{"cause": "logout-marker"}})
	stop(t, h)

	if n := rc.hits.Load(); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	errs := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "giving up") {
		t.Fatalf("error logs %v, want one give-up", errs)
	}
	if f := errs[0].ContextMap(); f["attempt"] != int64(3) || f["status"] != int64(503) || f["event_id"] == "" {
		t.Errorf("give-up fields %v", f)
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "logout-marker") || strings.Contains(f.String, "u1") {
				t.Errorf("log %q field %s carries the event body", e.Message, f.Key)
			}
		}
	}
}

func TestQueueFullDropsAndEmitNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(int, http.ResponseWriter) { <-release })
	var onDrop atomic.Int64
	h, logs := startHook(t, events.WebhookConfig{URL: rc.URL, QueueSize: 2, OnDrop: func(typ string) {
		if typ == events.GuestCreated {
			onDrop.Add(1)
		}
	}})
	// Registered after startHook, so it runs first: the hung handler must be
	// let go before the server and the Webhook are shut.
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	em := events.NewEmitter(zap.NewNop(), h)
	const total = 50
	start := time.Now()
	for range total {
		em.Emit(events.Event{Type: events.GuestCreated})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("%d Emits took %v while the receiver hangs", total, d)
	}

	// One event may be in flight and two queued; the rest are dropped.
	if d := h.Dropped(); d < total-3 || d > total-2 {
		t.Errorf("Dropped = %d, want %d or %d", d, total-3, total-2)
	}
	if uint64(onDrop.Load()) != h.Dropped() || h.DroppedByType()[events.GuestCreated] != h.Dropped() {
		t.Errorf("OnDrop called %d times for guest.created, Dropped = %d, by type %v", onDrop.Load(), h.Dropped(), h.DroppedByType())
	}
	if n := logs.FilterMessageSnippet("queue full").Len(); n != 1 {
		t.Errorf("%d queue-full warnings, want 1 (rate-limited)", n)
	}

	close(release)
	stop(t, h)
	if got := uint64(rc.hits.Load()) + h.Dropped(); got != total {
		t.Errorf("delivered + dropped = %d, want %d", got, total)
	}
}

func TestStopDrainsPending(t *testing.T) {
	rc := newReceiver(t, status(http.StatusOK))
	h, err := events.NewWebhook(events.WebhookConfig{URL: rc.URL, Secret: secret, Backoff: tiny}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if !h.Enqueue(events.Event{Type: events.GuestExpired}) {
			t.Fatal("Enqueue refused")
		}
	}
	h.Start()
	stop(t, h)
	if n := rc.hits.Load(); n != 5 {
		t.Errorf("%d delivered before Stop returned, want 5", n)
	}
	if h.Enqueue(events.Event{Type: events.GuestExpired}) {
		t.Error("Enqueue accepted an event after Stop")
	}
	if h.Dropped() != 0 {
		t.Error("a refusal after Stop was counted as a queue-full drop")
	}
}

func TestStopGivesUpAtDeadline(t *testing.T) {
	release := make(chan struct{})
	rc := newReceiver(t, func(int, http.ResponseWriter) { <-release })
	h, logs := startHook(t, events.WebhookConfig{URL: rc.URL})
	t.Cleanup(func() { close(release) })
	for range 3 {
		h.Enqueue(events.Event{Type: events.GuestCreated})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := h.Stop(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop = %v, want the deadline error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Stop took %v past its deadline", d)
	}
	lost := logs.FilterMessageSnippet("stopped before delivering").All()
	if len(lost) != 1 || lost[0].ContextMap()["events"] != int64(3) {
		t.Errorf("lost-events logs %v, want one counting 3", lost)
	}
}

func TestNewWebhookValidation(t *testing.T) {
	for _, tc := range []struct {
		url    string
		secret []byte
		ok     bool
	}{
		{"https://hooks.example.com/guestauth", secret, true},
		{"https://203.0.113.7:8443/hook", secret, true},
		{"http://127.0.0.1:8080/hook", secret, true},
		{"http://127.45.6.7/hook", secret, true},
		{"http://[::1]:8080/hook", secret, true},
		{"http://[::ffff:127.0.0.1]/hook", secret, true},
		{"http://localhost:8080/hook", secret, true},
		{"HTTP://LocalHost./hook", secret, true},
		{"HTTPS://hooks.example.com/", secret, true},
		// Plain http to anything but loopback could be read on the way.
		{"http://hooks.example.com/guestauth", secret, false},
		{"http://user:pw@hooks.example.com/", secret, false},
		{"http://10.0.0.5/hook", secret, false},
		{"http://192.168.1.1/hook", secret, false},
		{"http://0.0.0.0:8080/hook", secret, false},
		{"http://[fe80::1%25lo]/hook", secret, false},
		{"http://localhost.example.com/hook", secret, false},
		{"http://127.0.0.1.nip.io/hook", secret, false},
		{"http://app.localhost/hook", secret, false},
		{"ftp://hooks.example.com/", secret, false},
		{"file:///etc/passwd", secret, false},
		{"/relative/path", secret, false},
		{"https:///no-host", secret, false},
		{"", secret, false},
		{"https://hooks.example.com/", nil, false},
	} {
		_, err := events.NewWebhook(events.WebhookConfig{URL: tc.url, Secret: tc.secret}, nil)
		if (err == nil) != tc.ok {
			t.Errorf("NewWebhook(%q, secret %q): err = %v, want ok %v", tc.url, tc.secret, err, tc.ok)
		}
	}
}

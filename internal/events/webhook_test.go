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

func newHook(t *testing.T, cfg events.WebhookConfig) *events.Webhook {
	t.Helper()
	if cfg.Secret == nil {
		cfg.Secret = secret
	}
	if cfg.Backoff == nil {
		cfg.Backoff = tiny
	}
	h, err := events.NewWebhook(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// attempt encodes ev as the outbox stores it and makes one attempt.
func attempt(t *testing.T, h *events.Webhook, ev events.Event) (retry bool, wait time.Duration, err error) {
	t.Helper()
	ev, body, err := h.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return h.Attempt(context.Background(), ev.ID, body)
}

func TestDeliveryHeadersAndSignature(t *testing.T) {
	rc := newReceiver(t, status(http.StatusNoContent))
	h := newHook(t, events.WebhookConfig{URL: rc.URL})

	ev := events.Event{
		ID:       uuid.NewString(),
		Type:     events.GuestUpgraded,
		Time:     time.Date(2025, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600)),
		UserID:   "u1",
		ClientID: "app",
		Data:     map[string]any{"old_name": "guest-1", "new_name": "alice"},
	}
	if _, _, err := attempt(t, h, ev); err != nil {
		t.Fatal(err)
	}

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
	h := newHook(t, events.WebhookConfig{URL: rc.URL, Now: clock.Now})
	ev, body, err := h.Encode(events.Event{Type: events.GuestCreated})
	if err != nil {
		t.Fatal(err)
	}
	if retry, _, err := h.Attempt(context.Background(), ev.ID, body); err == nil || !retry {
		t.Fatalf("first attempt: retry %v, %v", retry, err)
	}
	clock.Advance(10 * time.Minute)
	if _, _, err := h.Attempt(context.Background(), ev.ID, body); err != nil {
		t.Fatal(err)
	}
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
	if id := got[0].header.Get("webhook-id"); id != ev.ID || got[1].header.Get("webhook-id") != id {
		t.Errorf("webhook-id %q then %q; want the event id %s on both", id, got[1].header.Get("webhook-id"), ev.ID)
	}
	if string(got[0].body) != string(got[1].body) {
		t.Error("a retry changed the body")
	}
	if err := webhook.Key(secret).Verify(got[1].header, got[1].body, clock.Now()); err != nil {
		t.Errorf("retry: %v", err)
	}
	if err := webhook.Key(secret).Verify(got[0].header, got[0].body, clock.Now()); !errors.Is(err, webhook.ErrStale) {
		t.Errorf("first attempt, replayed 10 minutes on: %v, want ErrStale", err)
	}
}

// What an attempt's outcome says: 2xx delivered; 5xx, 429 and network
// errors may be retried (after the receiver's Retry-After, when it gives
// one); any other answer, a redirect included, is a refusal.
func TestAttemptOutcomes(t *testing.T) {
	for _, tc := range []struct {
		code       int
		retryAfter string
		ok, retry  bool
		wait       time.Duration
	}{
		{http.StatusOK, "", true, false, -1},
		{http.StatusNoContent, "", true, false, -1},
		{http.StatusInternalServerError, "", false, true, -1},
		{http.StatusNotImplemented, "", false, true, -1},
		{http.StatusServiceUnavailable, "7", false, true, 7 * time.Second},
		{http.StatusTooManyRequests, "0", false, true, 0},
		{http.StatusTooManyRequests, "86400", false, true, time.Minute}, // capped
		{http.StatusBadRequest, "", false, false, -1},
		{http.StatusNotFound, "", false, false, -1},
		{http.StatusFound, "", false, false, -1},
	} {
		rc := newReceiver(t, func(_ int, w http.ResponseWriter) {
			w.Header().Set("Location", "/elsewhere")
			if tc.retryAfter != "" {
				w.Header().Set("Retry-After", tc.retryAfter)
			}
			w.WriteHeader(tc.code)
		})
		retry, wait, err := attempt(t, newHook(t, events.WebhookConfig{URL: rc.URL}), events.Event{Type: events.GuestCreated})
		if (err == nil) != tc.ok || retry != tc.retry || wait != tc.wait {
			t.Errorf("status %d: retry %v, wait %v, err %v; want ok %v, retry %v, wait %v", tc.code, retry, wait, err, tc.ok, tc.retry, tc.wait)
		}
		if n := rc.hits.Load(); n != 1 {
			t.Errorf("status %d: %d requests for one attempt", tc.code, n)
		}
	}
	// A network error may be retried.
	client := &http.Client{Transport: roundTripper(func(*http.Request) (*http.Response, error) { return nil, errors.New("connection reset") })}
	retry, _, err := attempt(t, newHook(t, events.WebhookConfig{URL: "https://hooks.example.com/x", Client: client}), events.Event{Type: events.GuestCreated})
	if err == nil || !retry {
		t.Errorf("network error: retry %v, err %v", retry, err)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

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

package events_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
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
	return h.Attempt(context.Background(), ev.ID, ev.Type, body)
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
		"Content-Type":          "application/json",
		"User-Agent":            "guestauth-webhook",
		"X-Guest-Auth-Event":    events.GuestUpgraded,
		"X-Guest-Auth-Delivery": ev.ID,
	} {
		if v := d.header.Get(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	if d.method != http.MethodPost {
		t.Errorf("method %s", d.method)
	}
	sig, ts := d.header.Get("X-Guest-Auth-Signature"), d.header.Get("X-Guest-Auth-Timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > time.Minute {
		t.Fatalf("X-Guest-Auth-Timestamp %q is not the Unix time now", ts)
	}
	if sig != events.Sign(secret, sec, d.body) || !strings.HasPrefix(sig, "sha256=") {
		t.Errorf("signature %q does not match the timestamp and body", sig)
	}
	if err := events.Verify(secret, d.header, d.body, time.Now(), 0); err != nil {
		t.Errorf("Verify refused a genuine delivery: %v", err)
	}
	tampered := []byte(strings.Replace(string(d.body), "alice", "mallory", 1))
	if err := events.Verify(secret, d.header, tampered, time.Now(), 0); !errors.Is(err, events.ErrBadSignature) {
		t.Errorf("Verify of a tampered body = %v", err)
	}
	if err := events.Verify([]byte("other secret"), d.header, d.body, time.Now(), 0); !errors.Is(err, events.ErrBadSignature) {
		t.Errorf("Verify with the wrong secret = %v", err)
	}

	var body map[string]any
	if err := json.Unmarshal(d.body, &body); err != nil {
		t.Fatal(err)
	}
	if body["id"] != ev.ID || body["type"] != events.GuestUpgraded || body["user_id"] != "u1" || body["client_id"] != "app" {
		t.Errorf("body %s", d.body)
	}
	if body["time"] != "2025-01-02T02:04:05Z" {
		t.Errorf("time %v, want RFC 3339 in UTC", body["time"])
	}
	if data, _ := body["data"].(map[string]any); data["old_name"] != "guest-1" || data["new_name"] != "alice" {
		t.Errorf("data %v", body["data"])
	}
}

func TestSignVerify(t *testing.T) {
	body := []byte(`{"id":"1"}`)
	const ts = 1735787045
	at := time.Unix(ts, 0)
	sig := events.Sign(secret, ts, body)
	if len(sig) != len("sha256=")+64 || strings.ToLower(sig) != sig {
		t.Fatalf("Sign = %q, want sha256= and 64 lowercase hex digits", sig)
	}
	// The signed material is the timestamp, a dot and the body.
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("1735787045." + string(body)))
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); sig != want {
		t.Fatalf("Sign = %q, want %q", sig, want)
	}
	hdr := func(ts, sig string) http.Header {
		h := http.Header{}
		if ts != "" {
			h.Set("X-Guest-Auth-Timestamp", ts)
		}
		if sig != "" {
			h.Set("X-Guest-Auth-Signature", sig)
		}
		return h
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		header http.Header
		body   string
		now    time.Time
		tol    time.Duration
		want   error
	}{
		{"genuine", secret, hdr("1735787045", sig), string(body), at, 0, nil},
		{"uppercase hex", secret, hdr("1735787045", "sha256="+strings.ToUpper(sig[7:])), string(body), at, 0, nil},
		{"4m59s late", secret, hdr("1735787045", sig), string(body), at.Add(5*time.Minute - time.Second), 0, nil},
		{"5m1s late", secret, hdr("1735787045", sig), string(body), at.Add(5*time.Minute + time.Second), 0, events.ErrStale},
		{"5m1s early", secret, hdr("1735787045", sig), string(body), at.Add(-5*time.Minute - time.Second), 0, events.ErrStale},
		{"within a longer tolerance", secret, hdr("1735787045", sig), string(body), at.Add(time.Hour), 2 * time.Hour, nil},
		{"other timestamp", secret, hdr("1735787046", sig), string(body), at, 0, events.ErrBadSignature},
		{"re-signed body only (old format)", secret, hdr("1735787045", oldSign(secret, body)), string(body), at, 0, events.ErrBadSignature},
		{"other body", secret, hdr("1735787045", sig), `{"id":"2"}`, at, 0, events.ErrBadSignature},
		{"no timestamp", secret, hdr("", sig), string(body), at, 0, events.ErrBadSignature},
		{"timestamp not a number", secret, hdr("soon", sig), string(body), at, 0, events.ErrBadSignature},
		{"no prefix", secret, hdr("1735787045", sig[7:]), string(body), at, 0, events.ErrBadSignature},
		{"other algorithm", secret, hdr("1735787045", "sha1="+sig[7:]), string(body), at, 0, events.ErrBadSignature},
		{"truncated", secret, hdr("1735787045", sig[:len(sig)-2]), string(body), at, 0, events.ErrBadSignature},
		{"not hex", secret, hdr("1735787045", "sha256=zz"), string(body), at, 0, events.ErrBadSignature},
		{"no signature", secret, hdr("1735787045", ""), string(body), at, 0, events.ErrBadSignature},
		{"empty secret", nil, hdr("1735787045", events.Sign(nil, ts, body)), string(body), at, 0, events.ErrBadSignature},
	} {
		if got := events.Verify(tc.secret, tc.header, []byte(tc.body), tc.now, tc.tol); !errors.Is(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%s: Verify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// oldSign is the signature before timestamps were signed: over the body alone.
func oldSign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
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
	if retry, _, err := h.Attempt(context.Background(), ev.ID, ev.Type, body); err == nil || !retry {
		t.Fatalf("first attempt: retry %v, %v", retry, err)
	}
	clock.Advance(10 * time.Minute)
	if _, _, err := h.Attempt(context.Background(), ev.ID, ev.Type, body); err != nil {
		t.Fatal(err)
	}
	got := rc.deliveries()
	if len(got) != 2 {
		t.Fatalf("%d attempts, want 2", len(got))
	}
	first, second := got[0].header.Get("X-Guest-Auth-Timestamp"), got[1].header.Get("X-Guest-Auth-Timestamp")
	if first != "1735787045" || second != "1735787645" {
		t.Errorf("timestamps %q, %q; want the clock at each attempt", first, second)
	}
	if got[0].header.Get("X-Guest-Auth-Signature") == got[1].header.Get("X-Guest-Auth-Signature") {
		t.Error("the retry reused the first signature")
	}
	if got[0].header.Get("X-Guest-Auth-Delivery") != got[1].header.Get("X-Guest-Auth-Delivery") || string(got[0].body) != string(got[1].body) {
		t.Error("a retry changed the delivery id or body")
	}
	if err := events.Verify(secret, got[1].header, got[1].body, clock.Now(), 0); err != nil {
		t.Errorf("retry: %v", err)
	}
	if err := events.Verify(secret, got[0].header, got[0].body, clock.Now(), 0); !errors.Is(err, events.ErrStale) {
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

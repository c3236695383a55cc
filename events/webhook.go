package events

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Delivery headers; see the package documentation.
const (
	HeaderEvent     = "X-Guest-Auth-Event"
	HeaderDelivery  = "X-Guest-Auth-Delivery"
	HeaderSignature = "X-Guest-Auth-Signature"
	userAgent       = "guestauth-webhook"
)

// maxWait caps the default backoff and any Retry-After a receiver asks for,
// so one slow receiver cannot park the queue for long.
const maxWait = time.Minute

// WebhookConfig configures a [Webhook]. Only URL and Secret are required.
type WebhookConfig struct {
	// URL receives the POSTs; it must be http or https.
	URL string
	// Secret keys the X-Guest-Auth-Signature HMAC. Required: an unsigned
	// webhook would let anyone who finds the URL forge events.
	Secret []byte
	// QueueSize bounds the events waiting for delivery (default 1000).
	// When the queue is full, new events are dropped and counted.
	QueueSize int
	// MaxAttempts is how many times one event is tried before it is given up
	// (default 6).
	MaxAttempts int
	// Backoff returns the wait after failed attempt n (1 for the first).
	// Default: 1s, 2s, 4s… capped at 1m, each with up to half taken off at
	// random, so receivers recovering from an outage are not hit in lockstep.
	Backoff func(attempt int) time.Duration
	// Timeout bounds each attempt, including reading the response headers
	// (default 10s).
	Timeout time.Duration
	// Client sends the requests. The default client does not follow
	// redirects, since following one would turn the POST into a GET.
	Client *http.Client
	// OnDrop, when set, is called for each event dropped because the queue is
	// full, for example to count it in metrics. It must not block.
	OnDrop func()
}

// Webhook is a [Sink] that POSTs events, signed, to one URL from a single
// background goroutine, in the order they were queued. Create it with
// NewWebhook, then call Start, and Stop when done.
type Webhook struct {
	url         string
	logURL      string // without any password, for logs
	secret      []byte
	maxAttempts int
	backoff     func(int) time.Duration
	timeout     time.Duration
	client      *http.Client
	onDrop      func()
	logger      *zap.Logger

	// mu orders Enqueue's send against Stop, so nothing is accepted after
	// Stop has begun draining.
	mu      sync.RWMutex
	started bool
	stopped bool
	queue   chan queued

	dropped  atomic.Uint64
	dropWarn rate.Sometimes

	ctx      context.Context // cancelled when Stop's deadline passes
	cancel   context.CancelFunc
	stopping chan struct{}
	done     chan struct{}
}

// queued is an event already encoded, so every attempt signs and sends the
// same bytes whatever happens to the caller's values afterwards.
type queued struct {
	id, typ string
	body    []byte
}

// NewWebhook validates cfg and returns a Webhook that is not yet started.
// logger receives delivery failures (nowhere when nil); request bodies are
// never logged.
func NewWebhook(cfg WebhookConfig, logger *zap.Logger) (*Webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("webhook URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("webhook URL %q: scheme must be http or https", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("webhook URL %q: missing host", u.Redacted())
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhook secret is required")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1000
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 6
	}
	if cfg.Backoff == nil {
		cfg.Backoff = defaultBackoff
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Webhook{
		url:         u.String(),
		logURL:      u.Redacted(),
		secret:      bytes.Clone(cfg.Secret),
		maxAttempts: cfg.MaxAttempts,
		backoff:     cfg.Backoff,
		timeout:     cfg.Timeout,
		client:      cfg.Client,
		onDrop:      cfg.OnDrop,
		logger:      logger,
		queue:       make(chan queued, cfg.QueueSize),
		dropWarn:    rate.Sometimes{Interval: time.Minute},
		ctx:         ctx,
		cancel:      cancel,
		stopping:    make(chan struct{}),
		done:        make(chan struct{}),
	}, nil
}

// defaultBackoff takes off up to half of each wait, not all of it, so a
// retry never comes right back.
func defaultBackoff(attempt int) time.Duration {
	d := maxWait
	if attempt < 7 { // 1s<<6 is past the cap already
		d = min(time.Second<<max(attempt-1, 0), maxWait)
	}
	return d/2 + rand.N(d/2+1) //nolint:gosec // G404: retry jitter needs no cryptographic randomness
}

// Start launches the delivery goroutine. Events queued before Start wait for
// it. Calling Start again, or after Stop, does nothing.
func (w *Webhook) Start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.stopped {
		return
	}
	w.started = true
	go w.run()
}

// Stop refuses new events, keeps delivering the queued ones until the queue
// is empty or ctx is done, and returns once the delivery goroutine has
// exited. It returns ctx's error if events were left undelivered (they are
// counted in a log entry). A Webhook cannot be restarted.
func (w *Webhook) Stop(ctx context.Context) error {
	w.mu.Lock()
	first, started := !w.stopped, w.started
	w.stopped = true
	w.mu.Unlock()
	if first {
		close(w.stopping)
	}
	if !started {
		w.cancel()
		if n := len(w.queue); first && n > 0 {
			w.logger.Warn("webhook stopped before it was started; events not delivered", zap.String("url", w.logURL), zap.Int("events", n))
		}
		return nil
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.cancel() // aborts the attempt in flight and any backoff wait
		<-w.done
		return ctx.Err()
	}
}

// Enqueue encodes ev and queues it for delivery, filling its ID and Time
// when empty. It never blocks: when the queue is full, or the Webhook is
// stopped, it reports false and the event is not sent. Prefer going through
// an [Emitter], which also strips secret-named Data keys.
func (w *Webhook) Enqueue(ev Event) bool {
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC()
	body, err := json.Marshal(ev)
	if err != nil {
		w.logger.Error("webhook: cannot encode event; dropped", zap.String("event_id", ev.ID), zap.String("type", ev.Type), zap.Error(err))
		return false
	}

	w.mu.RLock()
	if w.stopped {
		w.mu.RUnlock()
		return false
	}
	select {
	case w.queue <- queued{id: ev.ID, typ: ev.Type, body: body}:
		w.mu.RUnlock()
		return true
	default:
		w.mu.RUnlock()
	}

	n := w.dropped.Add(1)
	if w.onDrop != nil {
		w.onDrop()
	}
	// One line a minute at most: a flood of drops must not become a flood of logs.
	w.dropWarn.Do(func() {
		w.logger.Warn("webhook queue full; dropping events", zap.String("url", w.logURL), zap.Int("queue_size", cap(w.queue)), zap.Uint64("dropped_total", n))
	})
	return false
}

// Dropped is how many events were dropped because the queue was full.
func (w *Webhook) Dropped() uint64 { return w.dropped.Load() }

func (w *Webhook) run() {
	defer close(w.done)
	lost := 0
	for {
		var q queued
		select {
		case q = <-w.queue:
		case <-w.stopping:
			select {
			case q = <-w.queue:
			default:
				if lost > 0 {
					w.logger.Error("webhook stopped before delivering events", zap.String("url", w.logURL), zap.Int("events", lost))
				}
				return
			}
		}
		if w.ctx.Err() != nil || !w.deliver(q) {
			lost++
		}
	}
}

// deliver tries q until it is accepted, refused or given up, and reports
// false only when Stop's deadline cut it short.
func (w *Webhook) deliver(q queued) bool {
	for attempt := 1; ; attempt++ {
		status, wait, retry, err := w.post(q)
		if err == nil {
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		fields := []zap.Field{zap.String("url", w.logURL), zap.String("event_id", q.id), zap.String("type", q.typ), zap.Int("attempt", attempt)}
		if status != 0 {
			fields = append(fields, zap.Int("status", status))
		}
		fields = append(fields, zap.Error(err))
		if !retry {
			w.logger.Error("webhook refused event; not retrying", fields...)
			return true
		}
		if attempt >= w.maxAttempts {
			w.logger.Error("webhook delivery failed; giving up", fields...)
			return true
		}
		w.logger.Debug("webhook delivery failed; will retry", fields...)
		if wait < 0 {
			wait = w.backoff(attempt)
		}
		if !sleep(w.ctx, wait) {
			return false
		}
	}
}

// post makes one attempt. wait is the receiver's Retry-After, or -1.
func (w *Webhook) post(q queued) (status int, wait time.Duration, retry bool, err error) {
	ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(q.body))
	if err != nil {
		return 0, -1, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderEvent, q.typ)
	req.Header.Set(HeaderDelivery, q.id)
	req.Header.Set(HeaderSignature, Sign(w.secret, q.body))
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, -1, true, err
	}
	// Read a little of the body so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()

	switch s := resp.StatusCode; {
	case s >= 200 && s < 300:
		return s, -1, false, nil
	case s == http.StatusTooManyRequests || s >= 500:
		wait, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now())
		if !ok {
			wait = -1
		}
		return s, wait, true, fmt.Errorf("receiver answered %s", resp.Status)
	default:
		return s, -1, false, fmt.Errorf("receiver answered %s", resp.Status)
	}
}

// retryAfter parses a Retry-After header (seconds or an HTTP date), capped
// at maxWait.
func retryAfter(h string, now time.Time) (time.Duration, bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	// An out-of-range number is still a valid, very long delay.
	if s, err := strconv.ParseUint(h, 10, 63); err == nil || errors.Is(err, strconv.ErrRange) {
		return time.Duration(min(s, uint64(maxWait/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return min(max(t.Sub(now), 0), maxWait), true
	}
	return 0, false
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Sign returns the X-Guest-Auth-Signature value for body: "sha256=" and the
// lowercase hex HMAC-SHA256 of body keyed with secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is a valid X-Guest-Auth-Signature for body,
// comparing in constant time. body must be the raw request body. An empty
// secret verifies nothing.
func Verify(secret, body []byte, header string) bool {
	if len(secret) == 0 {
		return false
	}
	hexMAC, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexMAC)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(m.Sum(nil), got)
}

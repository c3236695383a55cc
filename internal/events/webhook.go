package events

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/guestauth/caddy-guestauth/webhook"
)

// userAgent names the sender in receivers' logs.
const userAgent = "guestauth-webhook"

// maxWait caps the default backoff and any Retry-After a receiver asks for,
// so one slow receiver cannot park the queue for long.
const maxWait = time.Minute

// maxNoisyKeys bounds the keys a webhook coalesces noisy events for at once;
// an event with a new key beyond that is dropped (and counted).
const maxNoisyKeys = 10000

// WebhookConfig configures a [Webhook]. Only URL and Secret are required.
type WebhookConfig struct {
	// URL receives the POSTs. It must be https, or http to a loopback host
	// (localhost, 127.0.0.0/8 or ::1): over plain http anyone on the path
	// could read the events.
	URL string
	// Secret keys the webhook-signature HMAC (see [webhook.ParseSecret]
	// for a configured secret). Required: an unsigned webhook would let
	// anyone who finds the URL forge events.
	Secret webhook.Key
	// QueueSize bounds the lifecycle and security events waiting for
	// delivery (default 1000). When it is full, new ones are dropped and
	// counted. Noisy events (see [Noisy]) never take a place in it.
	QueueSize int
	// NoisyQueueSize bounds the noisy events waiting for delivery, after
	// coalescing (default 100). They are sent only when no other event is
	// waiting; when it is full, new noisy events are dropped and counted.
	NoisyQueueSize int
	// CoalesceInterval is the interval over which noisy events with the same
	// type, user, client and client IP are folded into one summary event
	// (default 1m).
	CoalesceInterval time.Duration
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
	// OnDrop, when set, is called with the event type of each event dropped
	// because its queue was full, for example to count it in metrics. It
	// must not block.
	OnDrop func(eventType string)
	// Now is the clock for the signature timestamps and for coalescing
	// (default time.Now).
	Now func() time.Time
	// Spool, when set, receives each queued event instead of a POST: the
	// Webhook then only queues, coalesces and hands events to a shared
	// outbox (tried up to MaxAttempts times, with Backoff, while Spool
	// fails), and whoever reads the outbox posts them with [Webhook.Attempt].
	// Events already stored with their write are not given to the Webhook
	// (see [Emitter.Log]).
	Spool func(ctx context.Context, id, typ string, body []byte) error
}

// Webhook is a [Sink] that POSTs events, signed, to one URL from a single
// background goroutine. Lifecycle and security events are sent in the
// order they were queued and always before noisy ones, which are coalesced
// and queued apart (see [Noisy]). Create it with NewWebhook, then call
// Start, and Stop when done.
type Webhook struct {
	url         string
	logURL      string // without any password, for logs
	secret      webhook.Key
	maxAttempts int
	backoff     func(int) time.Duration
	timeout     time.Duration
	client      *http.Client
	onDrop      func(string)
	now         func() time.Time
	logger      *zap.Logger
	spool       func(ctx context.Context, id, typ string, body []byte) error

	// mu orders Enqueue's send against Stop, so nothing is accepted after
	// Stop has begun draining.
	mu      sync.RWMutex
	started bool
	stopped bool
	queue   chan queued // lifecycle and security events
	noisy   chan queued // noisy events, coalesced
	coal    *coalescer
	tick    time.Duration // how often ended coalescing intervals are flushed

	dropMu   sync.Mutex
	dropped  map[string]uint64 // by event type
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
		return nil, fmt.Errorf("webhook URL %q: scheme must be https (or http to a loopback host)", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("webhook URL %q: missing host", u.Redacted())
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("webhook URL %q: must be https unless the host is loopback (localhost, 127.0.0.0/8, ::1)", u.Redacted())
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("webhook secret is required")
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1000
	}
	if cfg.NoisyQueueSize <= 0 {
		cfg.NoisyQueueSize = 100
	}
	if cfg.CoalesceInterval <= 0 {
		cfg.CoalesceInterval = time.Minute
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Webhook{
		url:         u.String(),
		logURL:      u.Redacted(),
		secret:      webhook.Key(bytes.Clone(cfg.Secret)),
		maxAttempts: cfg.MaxAttempts,
		backoff:     cfg.Backoff,
		timeout:     cfg.Timeout,
		client:      cfg.Client,
		onDrop:      cfg.OnDrop,
		now:         cfg.Now,
		logger:      logger,
		spool:       cfg.Spool,
		queue:       make(chan queued, cfg.QueueSize),
		noisy:       make(chan queued, cfg.NoisyQueueSize),
		coal:        newCoalescer(cfg.CoalesceInterval, maxNoisyKeys),
		tick:        max(cfg.CoalesceInterval/4, time.Millisecond),
		dropped:     make(map[string]uint64),
		dropWarn:    rate.Sometimes{Interval: time.Minute},
		ctx:         ctx,
		cancel:      cancel,
		stopping:    make(chan struct{}),
		done:        make(chan struct{}),
	}, nil
}

// loopbackHost reports whether host (without port or brackets) is
// localhost or a loopback IP address.
func loopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Zone() == "" && ip.IsLoopback()
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

// Stop refuses new events, queues a summary of the noisy events still being
// coalesced, keeps delivering the queued events until none is left or ctx
// is done, and returns once the delivery goroutine has exited. It returns
// ctx's error if events were left undelivered (they are counted in a log
// entry). A Webhook cannot be restarted.
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
		if n := len(w.queue) + len(w.noisy); first && n > 0 {
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
// when empty. A noisy event (see [Noisy]) is coalesced: it is sent at once
// if it starts a burst, or else counted into a summary sent later. Enqueue
// never blocks: when the event's queue is full, or the Webhook is stopped,
// it reports false and the event is not sent. Prefer going through an
// [Emitter], which also strips secret-named Data keys.
func (w *Webhook) Enqueue(ev Event) bool {
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC()
	noisy := Noisy(ev.Type)
	var q queued
	if !noisy {
		var ok bool
		if q, ok = w.encode(ev); !ok {
			return false
		}
	}

	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.stopped {
		return false
	}
	if !noisy {
		return w.put(w.queue, q)
	}
	send, leads, ok := w.coal.add(ev, w.now())
	if !ok {
		w.drop(ev.Type, w.noisy) // a new key past maxNoisyKeys
	}
	for i, s := range send {
		q, encoded := w.encode(s)
		sent := encoded && w.put(w.noisy, q)
		if leads && i == len(send)-1 {
			ok = sent
		}
	}
	return ok
}

// Dropped is how many events were dropped because their queue was full.
func (w *Webhook) Dropped() uint64 {
	w.dropMu.Lock()
	defer w.dropMu.Unlock()
	var n uint64
	for _, c := range w.dropped {
		n += c
	}
	return n
}

func (w *Webhook) encode(ev Event) (queued, bool) {
	body, err := json.Marshal(ev)
	if err != nil {
		w.logger.Error("webhook: cannot encode event; dropped", zap.String("event_id", ev.ID), zap.String("type", ev.Type), zap.Error(err))
		return queued{}, false
	}
	return queued{id: ev.ID, typ: ev.Type, body: body}, true
}

// put queues q on ch without waiting, or counts it as dropped.
func (w *Webhook) put(ch chan queued, q queued) bool {
	select {
	case ch <- q:
		return true
	default:
		w.drop(q.typ, ch)
		return false
	}
}

func (w *Webhook) drop(typ string, ch chan queued) {
	w.dropMu.Lock()
	w.dropped[typ]++
	w.dropMu.Unlock()
	if w.onDrop != nil {
		w.onDrop(typ)
	}
	// One line a minute at most: a flood of drops must not become a flood of logs.
	w.dropWarn.Do(func() {
		w.logger.Warn("webhook queue full; dropping events", zap.String("url", w.logURL), zap.String("type", typ), zap.Int("queue_size", cap(ch)), zap.Uint64("dropped_total", w.Dropped()))
	})
}

// flushCoalesced queues the summaries of the coalescing intervals that have
// ended, or of all of them.
func (w *Webhook) flushCoalesced(all bool) {
	for _, ev := range w.coal.flush(w.now(), all) {
		if q, ok := w.encode(ev); ok {
			w.put(w.noisy, q)
		}
	}
}

func (w *Webhook) run() {
	defer close(w.done)
	tick := time.NewTicker(w.tick)
	defer tick.Stop()
	lost := 0
	for {
		q, ok := w.next(tick.C)
		if !ok {
			if lost > 0 {
				w.logger.Error("webhook stopped before delivering events", zap.String("url", w.logURL), zap.Int("events", lost))
			}
			return
		}
		if w.ctx.Err() != nil || !w.deliver(q) {
			lost++
		}
	}
}

// next waits for the next event to send, always taking a lifecycle or
// security event before a noisy one. Once Stop has begun, it flushes the
// coalesced events and returns what is left, then false.
func (w *Webhook) next(tick <-chan time.Time) (queued, bool) {
	for {
		select {
		case q := <-w.queue:
			return q, true
		default:
		}
		select {
		case q := <-w.queue:
			return q, true
		case q := <-w.noisy:
			return q, true
		case <-tick:
			w.flushCoalesced(false)
		case <-w.stopping:
			w.flushCoalesced(true) // Enqueue refuses events by now
			select {
			case q := <-w.queue:
				return q, true
			default:
			}
			select {
			case q := <-w.noisy:
				return q, true
			default:
				return queued{}, false
			}
		}
	}
}

// deliver tries q until it is accepted, refused or given up, and reports
// false only when Stop's deadline cut it short.
func (w *Webhook) deliver(q queued) bool {
	for attempt := 1; ; attempt++ {
		status, wait, retry, err := w.send(q)
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

// send makes one attempt: a POST, or in spool mode handing q to Spool.
func (w *Webhook) send(q queued) (status int, wait time.Duration, retry bool, err error) {
	if w.spool != nil {
		ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
		defer cancel()
		if err := w.spool(ctx, q.id, q.typ, q.body); err != nil {
			return 0, -1, true, fmt.Errorf("storing the event in the outbox: %w", err)
		}
		return 0, -1, false, nil
	}
	return w.post(w.ctx, q)
}

// Target names this webhook in a shared outbox: the hex SHA-256 of its
// URL, so rows are delivered only by processes posting to the same URL,
// and neither the URL's credentials nor the secret are stored.
func (w *Webhook) Target() string {
	h := sha256.Sum256([]byte(w.url))
	return hex.EncodeToString(h[:])
}

// Encode returns ev, prepared as an [Emitter] does (see [Prepare]), and
// its JSON body as delivered.
func (w *Webhook) Encode(ev Event) (Event, []byte, error) {
	ev = Prepare(ev)
	body, err := json.Marshal(ev)
	return ev, body, err
}

// Attempt makes one signed POST of a stored event, with the headers and
// signature of any delivery, bounded by the configured timeout. err is nil
// when the receiver accepted it (2xx); otherwise retry says whether it may
// be tried again (network errors, 5xx, 429), and wait is the receiver's
// Retry-After (capped at a minute), or -1.
func (w *Webhook) Attempt(ctx context.Context, id, typ string, body []byte) (retry bool, wait time.Duration, err error) {
	_, wait, retry, err = w.post(ctx, queued{id: id, typ: typ, body: body})
	return retry, wait, err
}

// Backoff is the wait after failed attempt n (1 for the first).
func (w *Webhook) Backoff(n int) time.Duration { return w.backoff(n) }

// MaxAttempts is how many times an event is tried before it is given up.
func (w *Webhook) MaxAttempts() int { return w.maxAttempts }

// post makes one attempt. wait is the receiver's Retry-After, or -1.
func (w *Webhook) post(parent context.Context, q queued) (status int, wait time.Duration, retry bool, err error) {
	ctx, cancel := context.WithTimeout(parent, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(q.body))
	if err != nil {
		return 0, -1, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	// Standard Webhooks: the id is the event's, the same on every attempt
	// and from every node; the timestamp is this attempt's.
	w.secret.SetHeaders(req.Header, q.id, w.now(), q.body)
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

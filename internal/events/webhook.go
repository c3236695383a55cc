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
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Delivery headers; see the package documentation.
const (
	HeaderEvent     = "X-Guest-Auth-Event"
	HeaderDelivery  = "X-Guest-Auth-Delivery"
	HeaderTimestamp = "X-Guest-Auth-Timestamp"
	HeaderSignature = "X-Guest-Auth-Signature"
	userAgent       = "guestauth-webhook"
)

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock before [Verify] refuses it as a possible replay.
const DefaultTolerance = 5 * time.Minute

// maxWait caps the default backoff and any Retry-After a receiver asks for,
// so one slow receiver cannot hold an event back for long.
const maxWait = time.Minute

// WebhookConfig configures a [Webhook]. Only URL and Secret are required.
type WebhookConfig struct {
	// URL receives the POSTs. It must be https, or http to a loopback host
	// (localhost, 127.0.0.0/8 or ::1): over plain http anyone on the path
	// could read the events.
	URL string
	// Secret keys the X-Guest-Auth-Signature HMAC. Required: an unsigned
	// webhook would let anyone who finds the URL forge events.
	Secret []byte
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
	// Now is the clock for the signature timestamps (default time.Now).
	Now func() time.Time
}

// Webhook makes signed delivery attempts to one URL ([Webhook.Attempt]):
// one POST of an event's stored body per attempt. It keeps no events:
// they wait in the store's outbox, whose deliverer (internal/outbox)
// claims them and calls Attempt, retrying with [Webhook.Backoff] up to
// [Webhook.MaxAttempts].
type Webhook struct {
	url         string
	logURL      string // without any password, for logs
	secret      []byte
	maxAttempts int
	backoff     func(int) time.Duration
	timeout     time.Duration
	client      *http.Client
	now         func() time.Time
	logger      *zap.Logger
}

// queued is an event already encoded, so every attempt signs and sends the
// same bytes whatever happens to the caller's values afterwards.
type queued struct {
	id, typ string
	body    []byte
}

// NewWebhook validates cfg and returns a Webhook. logger is kept for the
// deliverer's messages about this URL (nowhere when nil); request bodies
// are never logged.
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
	return &Webhook{
		url:         u.String(),
		logURL:      u.Redacted(),
		secret:      bytes.Clone(cfg.Secret),
		maxAttempts: cfg.MaxAttempts,
		backoff:     cfg.Backoff,
		timeout:     cfg.Timeout,
		client:      cfg.Client,
		now:         cfg.Now,
		logger:      logger,
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

// Target names this webhook in the store's outbox: the hex SHA-256 of its
// URL, so records are delivered only by processes posting to the same URL,
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

// Logger is where messages about this webhook's deliveries go.
func (w *Webhook) Logger() *zap.Logger { return w.logger }

// LogURL is the webhook's URL without any password, for logs.
func (w *Webhook) LogURL() string { return w.logURL }

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

// Timeout bounds each attempt.
func (w *Webhook) Timeout() time.Duration { return w.timeout }

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
	req.Header.Set(HeaderEvent, q.typ)
	req.Header.Set(HeaderDelivery, q.id)
	ts := w.now().Unix()
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.secret, ts, q.body))
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

// Errors from [Verify].
var (
	ErrBadSignature = errors.New("webhook signature missing or wrong")
	ErrStale        = errors.New("webhook timestamp outside the tolerance: a replay, or a clock off")
)

// Sign returns the X-Guest-Auth-Signature value for a delivery of body
// signed at timestamp (Unix seconds, sent as X-Guest-Auth-Timestamp):
// "sha256=" and the lowercase hex HMAC-SHA256, keyed with secret, of the
// timestamp in decimal, a ".", and body.
func Sign(secret []byte, timestamp int64, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, strconv.FormatInt(timestamp, 10), body))
}

func mac(secret []byte, timestamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(timestamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Verify checks a delivery as a receiver should: header holds its
// X-Guest-Auth-Timestamp and X-Guest-Auth-Signature, and body must be the
// raw request body. It returns [ErrBadSignature] unless the signature
// matches (compared in constant time), and [ErrStale] unless the timestamp
// is within tolerance of now either way ([DefaultTolerance] when tolerance
// is not positive). An empty secret verifies nothing. Within the tolerance
// a captured delivery can still be replayed: de-duplicate on
// X-Guest-Auth-Delivery too.
func Verify(secret []byte, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if len(secret) == 0 {
		return ErrBadSignature
	}
	ts := header.Get(HeaderTimestamp)
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrBadSignature
	}
	hexMAC, ok := strings.CutPrefix(strings.TrimSpace(header.Get(HeaderSignature)), "sha256=")
	if !ok {
		return ErrBadSignature
	}
	got, err := hex.DecodeString(hexMAC)
	if err != nil || !hmac.Equal(mac(secret, ts, body), got) {
		return ErrBadSignature
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return ErrStale
	}
	return nil
}

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
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/webhook"
)

// userAgent names the sender in receivers' logs.
const userAgent = "guestauth-webhook"

// maxWait caps the default backoff and any Retry-After a receiver asks for,
// so one slow receiver cannot hold an event back for long.
const maxWait = time.Minute

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
	secret      webhook.Key
	maxAttempts int
	backoff     func(int) time.Duration
	timeout     time.Duration
	client      *http.Client
	now         func() time.Time
	logger      *zap.Logger
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
		secret:      webhook.Key(bytes.Clone(cfg.Secret)),
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
func (w *Webhook) Attempt(ctx context.Context, id string, body []byte) (retry bool, wait time.Duration, err error) {
	_, wait, retry, err = w.post(ctx, id, body)
	return retry, wait, err
}

// Backoff is the wait after failed attempt n (1 for the first).
func (w *Webhook) Backoff(n int) time.Duration { return w.backoff(n) }

// MaxAttempts is how many times an event is tried before it is given up.
func (w *Webhook) MaxAttempts() int { return w.maxAttempts }

// Timeout bounds each attempt.
func (w *Webhook) Timeout() time.Duration { return w.timeout }

// post makes one attempt. wait is the receiver's Retry-After, or -1.
func (w *Webhook) post(parent context.Context, id string, body []byte) (status int, wait time.Duration, retry bool, err error) {
	ctx, cancel := context.WithTimeout(parent, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return 0, -1, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	// Standard Webhooks: the id is the event's, the same on every attempt
	// and from every node; the timestamp is this attempt's.
	w.secret.SetHeaders(req.Header, id, w.now(), body)
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

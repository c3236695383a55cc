// Package webhook is for apps that receive guestauth's webhook deliveries:
// the [Event] each one carries, and [Verify], which checks that a delivery
// is genuine and fresh. It uses the standard library only.
//
// # Deliveries
//
// Deliveries follow the Standard Webhooks specification
// (https://www.standardwebhooks.com), so the spec's libraries in other
// languages verify them too. Each event is one POST whose body is the
// event's JSON (see [Event]):
//
//	{"id":"0193…","type":"guest.upgraded","time":"2025-01-02T03:04:05.123456Z",
//	 "user_id":"…","client_id":"…","data":{"old_name":"guest-1a2b","new_name":"alice"}}
//
// with these headers:
//
//	Content-Type: application/json
//	webhook-id: <the event id>
//	webhook-timestamp: <Unix seconds when this attempt was signed>
//	webhook-signature: v1,<base64 HMAC-SHA256 of id + "." + timestamp + "." + body>
//
// The signature covers the id, the timestamp and the exact body bytes, so
// none of them can be changed, and a captured delivery can be replayed
// only as itself, within the tolerance (five minutes by default). A
// receiver:
//
//  1. reads the raw body, before any JSON parsing (re-encoding changes it);
//  2. calls [Verify] (or a Standard Webhooks library), which checks the
//     signature in constant time and refuses a timestamp further than the
//     tolerance from its clock;
//  3. de-duplicates on webhook-id, which is also the event's id: remember
//     ids for at least twice the tolerance; this absorbs retries and stops
//     a replay within the tolerance;
//  4. answers any 2xx once the event is stored (or was already).
//
// A delivery is retried with backoff on network errors, 5xx and 429, each
// attempt with a fresh timestamp and signature but the same id and body. A
// 4xx other than 429, or a redirect, is taken as a refusal and not retried.
// Deliveries are at least once: when several nodes share a store, any of
// them may deliver an event, always under the same id, and events from
// different nodes are not ordered with each other.
//
// # The secret
//
// The secret is configured on the sender (the Caddyfile's webhook
// directive) and given to [Verify] or [ParseSecret] as the same string:
//
//   - "whsec_" followed by standard base64 (the spec's format; padding
//     optional): the HMAC key is the decoded bytes. Generate one with, for
//     example, `echo "whsec_$(openssl rand -base64 32)"`. The Standard
//     Webhooks libraries take it as it is.
//   - anything else is a plain secret: the HMAC key is its bytes as
//     written (UTF-8), not decoded. The Standard Webhooks libraries would
//     base64-decode it, so give them the raw bytes instead: JavaScript
//     new Webhook(Buffer.from(secret), {format: "raw"}), Python
//     Webhook(secret.encode()), Go standardwebhooks.NewWebhookRaw([]byte(secret));
//     or give them "whsec_" and the base64 of those bytes, the same key.
//
// # Noisy events
//
// signin.throttled is noisy: anyone can cause one per request. Per type,
// user, client and client IP, the first one of a burst is sent at once with
// data.count 1, and those that follow within a minute are folded into one
// summary event, with an id of its own: data.count says how many it stands
// for and data.since when the first of them happened. Adding up data.count
// gives the number of occurrences. When too many are waiting, noisy events
// are dropped, and only they.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of a delivery, as the spec writes them. [http.Header]
// canonicalizes them (Webhook-Id); header names are case-insensitive.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// SecretPrefix marks a secret given as base64 key bytes (see [ParseSecret]).
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock, either way, before [Verify] refuses it: the spec's five
// minutes.
const DefaultTolerance = 5 * time.Minute

// Errors from [Verify]. Either way the delivery must be refused; they are
// apart so a receiver can log a clock problem differently from a forgery.
var (
	// ErrBadSignature: a header missing or malformed, or no signature
	// matching: not sent with this secret, or changed on the way.
	ErrBadSignature = errors.New("webhook signature missing or wrong")
	// ErrStale: a genuine delivery whose timestamp is outside the
	// tolerance: a replay, or a clock off.
	ErrStale = errors.New("webhook timestamp outside the tolerance: a replay, or a clock off")
)

// Key is the HMAC-SHA256 key deliveries are signed with. Its String method
// does not print it.
type Key []byte

// ParseSecret returns the key of a configured secret: for "whsec_" and
// standard base64 (padded or not), the decoded bytes; for any other
// non-empty string, its bytes as they are. An empty secret, or a "whsec_"
// one that does not decode to at least one byte, is an error (which never
// contains the secret).
func ParseSecret(secret string) (Key, error) {
	b64, prefixed := strings.CutPrefix(secret, SecretPrefix)
	if !prefixed {
		if secret == "" {
			return nil, errors.New("webhook secret is empty")
		}
		return Key(secret), nil
	}
	enc := base64.StdEncoding
	if !strings.HasSuffix(b64, "=") && len(b64)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	key, err := enc.DecodeString(b64)
	if err != nil {
		return nil, fmt.Errorf("webhook secret: %s must be followed by standard base64 (A-Z, a-z, 0-9, +, /): %w", SecretPrefix, err)
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("webhook secret: no key after %s", SecretPrefix)
	}
	return Key(key), nil
}

// String hides the key, so a key logged by mistake is not leaked.
func (k Key) String() string { return "webhook.Key(redacted)" }

// GoString hides the key from %#v too.
func (k Key) GoString() string { return k.String() }

// Sign returns the webhook-signature value of a delivery of body with id,
// signed at ts: "v1," and the standard base64 HMAC-SHA256, keyed with k, of
// id, ".", ts in Unix seconds, ".", and body. id must not contain a ".".
func (k Key) Sign(id string, ts time.Time, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(k.mac(id, strconv.FormatInt(ts.Unix(), 10), body))
}

// SetHeaders sets the webhook-id, webhook-timestamp and webhook-signature
// headers of a delivery of body with id, signed at ts.
func (k Key) SetHeaders(h http.Header, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, k.Sign(id, ts, body))
}

func (k Key) mac(id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, k)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Option adjusts [Verify].
type Option func(*options)

type options struct {
	tolerance time.Duration
}

// WithTolerance sets how far the timestamp may be from now, either way
// ([DefaultTolerance] when not positive). A longer one makes a replay
// possible for longer; remember delivery ids for twice as long.
func WithTolerance(d time.Duration) Option {
	return func(o *options) { o.tolerance = d }
}

// Verify checks a delivery as a receiver must before trusting it: header
// holds its webhook-id, webhook-timestamp and webhook-signature (read with
// [http.Header.Get], so with canonical keys, as net/http delivers them),
// and body must be the raw request body. It returns nil when one of the v1
// signatures in the header (a space-separated list; others are ignored)
// is k's, compared in constant time, and the timestamp is within the
// tolerance of now. Otherwise it returns an error wrapping
// [ErrBadSignature] or, for a genuine delivery signed too long ago or
// ahead, [ErrStale]. An empty key verifies nothing.
//
// Within the tolerance a captured delivery can still be replayed as it is:
// de-duplicate on the webhook-id too.
func (k Key) Verify(header http.Header, body []byte, now time.Time, opts ...Option) error {
	o := options{tolerance: DefaultTolerance}
	for _, opt := range opts {
		opt(&o)
	}
	if o.tolerance <= 0 {
		o.tolerance = DefaultTolerance
	}
	if len(k) == 0 {
		return fmt.Errorf("%w: no key", ErrBadSignature)
	}
	id, ts, sigs := header.Get(HeaderID), header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("%w: %s, %s and %s are required", ErrBadSignature, HeaderID, HeaderTimestamp, HeaderSignature)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sec < 0 {
		return fmt.Errorf("%w: %s is not Unix seconds", ErrBadSignature, HeaderTimestamp)
	}
	want := k.mac(id, ts, body)
	matched := false
	for _, s := range strings.Fields(sigs) {
		version, b64, ok := strings.Cut(s, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			matched = true
			break
		}
	}
	if !matched {
		return fmt.Errorf("%w: no v1 signature matches", ErrBadSignature)
	}
	switch d := now.Sub(time.Unix(sec, 0)); {
	case d > o.tolerance:
		return fmt.Errorf("%w: signed %s ago", ErrStale, d.Round(time.Second))
	case d < -o.tolerance:
		return fmt.Errorf("%w: signed %s ahead of this clock", ErrStale, -d.Round(time.Second))
	}
	return nil
}

// Verify is [ParseSecret] then [Key.Verify]; a secret that does not parse
// verifies nothing (the error wraps [ErrBadSignature]). A receiver handling
// many deliveries may parse its secret once instead.
func Verify(secret string, header http.Header, body []byte, now time.Time, opts ...Option) error {
	k, err := ParseSecret(secret)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return k.Verify(header, body, now, opts...)
}

// Sign is [ParseSecret] then [Key.Sign].
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	k, err := ParseSecret(secret)
	if err != nil {
		return "", err
	}
	return k.Sign(id, ts, body), nil
}

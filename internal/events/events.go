// Package events reports what happens to guests and sessions: each event is
// written to Caddy's log and, optionally, POSTed to a webhook so an app can
// react (for example, move a guest's data when the guest is upgraded).
//
// # Webhook deliveries
//
// Each event is sent as one POST whose body is the event's JSON:
//
//	{"id":"5b9d…","type":"guest.upgraded","time":"2025-01-02T03:04:05.123456Z",
//	 "user_id":"…","client_id":"…","data":{"old_name":"guest-1a2b","new_name":"alice"}}
//
// with these headers:
//
//	Content-Type: application/json
//	User-Agent: guestauth-webhook
//	X-Guest-Auth-Event: guest.upgraded
//	X-Guest-Auth-Delivery: <the event id>
//	X-Guest-Auth-Timestamp: <Unix seconds when this attempt was signed>
//	X-Guest-Auth-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." + body>
//
// The signature is the lowercase hex HMAC-SHA256, keyed with the webhook
// secret, of the X-Guest-Auth-Timestamp value as sent, a ".", and the exact
// body bytes. A receiver must check a delivery before trusting it (Go:
// [Verify]; the package example does it with the standard library only):
//
//  1. read the raw body, before any JSON parsing (re-encoding changes the bytes);
//  2. compute "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body));
//  3. compare it with X-Guest-Auth-Signature in constant time (Go:
//     hmac.Equal; Node: crypto.timingSafeEqual; Python: hmac.compare_digest)
//     and reject the request on a mismatch;
//  4. reject it when the timestamp is more than a few minutes
//     ([DefaultTolerance], 5) from the receiver's clock, so a captured
//     delivery cannot be replayed later;
//  5. de-duplicate on X-Guest-Auth-Delivery (the event id), remembering ids
//     for at least twice the tolerance: this stops a replay within the
//     tolerance, and absorbs retries.
//
// A delivery is retried with backoff on network errors, 5xx and 429, each
// attempt with a fresh timestamp and signature but the same id and body, so
// a receiver may see the same event more than once. Answer with any 2xx
// once the event is stored (or was already); a 4xx other than 429, or a
// redirect, is taken as a refusal and not retried.
//
// # Noisy events
//
// Lifecycle and security events (guest.created, guest.upgraded,
// guest.expired, user.deleted, session.revoked, refresh.reuse_detected) are
// always delivered before noisy ones, so a flood cannot delay or evict
// them. signin.throttled is noisy (see [Noisy]): anyone can cause one per
// request. Per type, user, client and client IP, the first one of a burst
// is sent at once with data.count 1, and those that follow within the
// coalescing interval (a minute by default) are folded into one summary
// event, with a new id, sent when the interval ends: data.count says how
// many it stands for and data.since when the first of them happened.
// Adding up data.count gives the number of occurrences. When too many
// noisy events are being stored at once, new ones are dropped (and
// counted), and only they.
//
// # The outbox
//
// Events wait for delivery in the store's outbox, never in memory
// (internal/outbox, on every storage backend): a lifecycle event is stored
// in the transaction of the write it reports, so an acknowledged write's
// event survives the process that made it; the others right after they
// happen. Any instance using the store with the same URL posts them
// ([Webhook.Attempt]) with the same headers, signature, retries and
// backoff. The id is fixed when the event is stored, so a retry, or a
// redelivery after a restart or by another instance, has the same
// X-Guest-Auth-Delivery: de-duplicating on it is what makes delivery
// exactly-once for the receiver. Deliveries are not strictly ordered.
//
// Events never carry a secret, password or token; see [Event].
package events

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Event types.
const (
	// GuestCreated: a guest user was created (data: none, or the client_ip).
	GuestCreated = "guest.created"
	// GuestUpgraded: a guest became a named account (data: old_name, new_name).
	GuestUpgraded = "guest.upgraded"
	// GuestExpired: an idle guest was deleted.
	GuestExpired = "guest.expired"
	// SessionRevoked: one or more sessions ended early (data: cause, such as
	// "logout" or "password_changed").
	SessionRevoked = "session.revoked"
	// RefreshReuseDetected: a spent refresh token was presented again, so its
	// session was ended; a sign of a stolen token.
	RefreshReuseDetected = "refresh.reuse_detected"
	// SignInThrottled: sign-in attempts were refused for too many failures.
	SignInThrottled = "signin.throttled"
	// UserDeleted: an administrator deleted a user (data: name, tag).
	UserDeleted = "user.deleted"
	// GuestMerged: a visitor with a guest session signed in to an existing
	// account (data: guest_id, user_id); the app may move the guest's data.
	// The guest session ended; the guest expires normally unless kept.
	GuestMerged = "guest.merged"
)

// Event is one thing that happened, as logged and as sent to webhooks.
//
// An Event must never carry a secret, password or full token (access,
// refresh, ID or device token), in any field: webhook receivers and log
// pipelines are less trusted than the module. To make a slip harmless, Emit
// drops any Data key whose name contains "secret", "password" or "token".
type Event struct {
	// ID is a random UUID (v4), the same on every retry, so receivers can
	// de-duplicate. Emit fills it when empty.
	ID string `json:"id"`
	// Type is one of the constants above, such as GuestCreated.
	Type string `json:"type"`
	// Time is when it happened, in UTC; Emit fills it when zero.
	Time     time.Time `json:"time"`
	UserID   string    `json:"user_id,omitempty"`
	ClientID string    `json:"client_id,omitempty"`
	// Data holds the rest, such as old_name and new_name for an upgrade,
	// cause for a revocation, or client_ip. Values must encode as JSON.
	Data map[string]any `json:"data,omitempty"`
	// Stored marks an event already stored in the store's outbox, in the
	// transaction of the write it reports: it is logged, and the outbox
	// only delivers it (it does not store it again).
	Stored bool `json:"-"`
}

// Sink receives emitted events, such as a [Webhook].
type Sink interface {
	// Enqueue accepts ev for later delivery, or reports false when it
	// cannot. It must not block: Emit is called on request paths.
	Enqueue(ev Event) bool
}

// Emitter logs events and hands them to sinks. A nil *Emitter does nothing,
// so callers need no checks when events are not configured.
type Emitter struct {
	logger *zap.Logger
	sinks  []Sink
}

// NewEmitter returns an Emitter that logs to logger (nowhere when nil) and
// passes each event to sinks, in order.
func NewEmitter(logger *zap.Logger, sinks ...Sink) *Emitter {
	if logger == nil {
		logger = zap.NewNop()
	}
	return &Emitter{logger: logger, sinks: slices.DeleteFunc(slices.Clone(sinks), func(s Sink) bool { return s == nil })}
}

// Emit fills ev's ID and Time when empty, writes one log entry whose message
// is the event type, and hands the event to every sink.
// RefreshReuseDetected and SignInThrottled are logged at Warn, the rest at
// Info. Emit does no network I/O and never waits for a sink.
func (e *Emitter) Emit(ev Event) {
	if e == nil {
		return
	}
	ev = Prepare(ev)

	level := zapcore.InfoLevel
	if ev.Type == RefreshReuseDetected || ev.Type == SignInThrottled {
		level = zapcore.WarnLevel
	}
	if ce := e.logger.Check(level, ev.Type); ce != nil {
		fields := make([]zap.Field, 0, 3+len(ev.Data))
		fields = append(fields, zap.String("event_id", ev.ID))
		if ev.UserID != "" {
			fields = append(fields, zap.String("user_id", ev.UserID))
		}
		if ev.ClientID != "" {
			fields = append(fields, zap.String("client_id", ev.ClientID))
		}
		// Sorted, so log lines for the same event type read alike.
		for _, k := range slices.Sorted(maps.Keys(ev.Data)) {
			fields = append(fields, zap.Any(k, ev.Data[k]))
		}
		ce.Write(fields...)
	}

	for _, s := range e.sinks {
		s.Enqueue(ev)
	}
}

// Prepare returns ev as Emit sends it: its ID and Time filled when empty,
// Time in UTC, and a copy of its Data without secret-named keys (so a
// caller reusing its map cannot race a sink that encodes the event later).
func Prepare(ev Event) Event {
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC()
	ev.Data = safeData(ev.Data)
	return ev
}

// safeData returns a copy of data without keys that name a secret.
func safeData(data map[string]any) map[string]any {
	if len(data) == 0 {
		return nil
	}
	out := make(map[string]any, len(data))
	for k, v := range data {
		if !secretKey(k) {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func secretKey(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "secret") || strings.Contains(k, "password") || strings.Contains(k, "token")
}

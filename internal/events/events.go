// Package events reports what happens to guests and sessions: each event is
// written to Caddy's log and, optionally, POSTed to a webhook so an app can
// react (for example, move a guest's data when the guest is upgraded).
//
// # Webhook deliveries
//
// What a receiver sees is documented, with [webhook.Verify] to check it, in
// the public package github.com/guestauth/caddy-guestauth/webhook: each
// event is one POST of the event's JSON ([Event], which is
// [webhook.Event]), signed per the Standard Webhooks specification with
// the webhook-id (the event id), webhook-timestamp (this attempt's) and
// webhook-signature headers ([webhook.Key.SetHeaders]). This package only
// sends them.
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
// guest.expired, user.created, user.deleted, session.revoked,
// refresh.reuse_detected) are
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
// webhook-id: de-duplicating on it is what makes delivery exactly-once for
// the receiver. Deliveries are not strictly ordered (a retry may land
// after a later event): receivers order by the event's time. An event
// already stored with its write is only logged ([Emitter.Log]); the
// others go to the outbox as a [Sink].
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

	"github.com/guestauth/caddy-guestauth/webhook"
)

// Event types, as the webhook package defines them for receivers.
const (
	GuestCreated         = webhook.GuestCreated
	GuestUpgraded        = webhook.GuestUpgraded
	GuestExpired         = webhook.GuestExpired
	SessionRevoked       = webhook.SessionRevoked
	RefreshReuseDetected = webhook.RefreshReuseDetected
	SignInThrottled      = webhook.SignInThrottled
	UserDeleted          = webhook.UserDeleted
	GuestMerged          = webhook.GuestMerged
	UserCreated          = webhook.UserCreated
	PasswordReset        = webhook.PasswordReset
	IdentityLinked       = webhook.IdentityLinked
	IdentityUnlinked     = webhook.IdentityUnlinked
)

// Event is one thing that happened, as logged and as sent to webhooks: the
// one definition is the webhook package's, which receivers decode.
//
// An Event must never carry a secret, password or full token (access,
// refresh, ID or device token), in any field: webhook receivers and log
// pipelines are less trusted than the module. To make a slip harmless, Emit
// drops any Data key whose name contains "secret", "password" or "token".
// Emit fills an empty ID (a random UUID, the same on every retry) and a
// zero Time.
type Event = webhook.Event

// CaddyName is the name under which an event of type typ is also emitted
// to Caddy's events app: guest_auth_ followed by the type with "." as "_"
// (guest_auth_guest_created), so a site's `events` handlers can subscribe
// to it.
func CaddyName(typ string) string {
	return "guest_auth_" + strings.ReplaceAll(typ, ".", "_")
}

// Sink receives emitted events, such as the webhook outbox
// (internal/outbox), which stores them for delivery.
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
	ev = e.Log(ev)
	for _, s := range e.sinks {
		s.Enqueue(ev)
	}
}

// Log is Emit without the sinks, for an event already stored for delivery
// (in the store's outbox, with the write it reports). It returns ev as logged
// (see [Prepare]).
func (e *Emitter) Log(ev Event) Event {
	if e == nil {
		return ev
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
	return ev
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

// Package metrics exposes guestauth's Prometheus metrics, all named
// caddy_guest_auth_*, on Caddy's metrics endpoint.
//
// The collectors are created once per process and registered into each
// config's registry, as Caddy's own modules do, so counters keep counting
// across config reloads instead of restarting at zero. The functions that
// count are safe to call before Register and from any goroutine.
//
// Counters:
//
//	caddy_guest_auth_guests_created_total
//	caddy_guest_auth_guests_upgraded_total
//	caddy_guest_auth_guests_upgraded_by_method_total{method}  password, provider, passkey, email
//	caddy_guest_auth_guests_merged_total                      guests merged into the member who signed in
//	caddy_guest_auth_users_deleted_total                      users deleted (by themselves, the app, an admin)
//	caddy_guest_auth_guests_expired_total
//	caddy_guest_auth_rate_limited_total{limit}                ip, global, cap, signin
//	caddy_guest_auth_token_verification_failures_total{reason} malformed, bad_signature, expired, wrong_issuer, bad_claims, session_ended
//	caddy_guest_auth_signin_failures_total
//	caddy_guest_auth_token_cache_hits_total                   verified-token cache hits
//	caddy_guest_auth_token_cache_misses_total                 lookups that had to verify the signature
//	caddy_guest_auth_mail_queued_total{kind}                  verify, changed, reset, signin: stored in the outbox
//	caddy_guest_auth_mail_sent_total{kind}                    accepted by the SMTP server
//	caddy_guest_auth_mail_failed_total{kind}                  attempts that failed (retried, or given up: mail_given_up_total)
//	caddy_guest_auth_mail_given_up_total{kind}                mail dropped after its last attempt or too old
//	caddy_guest_auth_webhook_dropped_total{type}              guest.created, guest.upgraded, guest.expired, session.revoked, refresh.reuse_detected, signin.throttled, user.deleted
//
// Gauges, read from the store at scrape time (see SetGaugeSource):
//
//	caddy_guest_auth_live_guests
//	caddy_guest_auth_kept_guests
//	caddy_guest_auth_members                                  users that are not guests (SetPopulationSource)
//	caddy_guest_auth_sessions                                 stored sessions
package metrics

import (
	"errors"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/guestauth/caddy-guestauth/internal/events"
)

const (
	namespace = "caddy"
	subsystem = "guest_auth"
)

// Values of the limit label of caddy_guest_auth_rate_limited_total.
const (
	LimitIP     = "ip"     // too many requests from one client IP
	LimitGlobal = "global" // too many requests overall
	LimitCap    = "cap"    // the guest population cap was reached
	LimitSignIn = "signin" // sign-in throttled after failed passwords
	LimitName   = "name"   // too many username changes (per user or IP)
	LimitEmail  = "email"  // too many mails asked for (per address or IP)
)

// Values of the reason label of
// caddy_guest_auth_token_verification_failures_total.
const (
	ReasonMalformed    = "malformed"      // not a parseable token
	ReasonBadSignature = "bad_signature"  // signature invalid or key unknown
	ReasonExpired      = "expired"        // past exp, or not yet valid
	ReasonWrongIssuer  = "wrong_issuer"   // iss is not this server
	ReasonWrongAud     = "wrong_audience" // aud is none of this site's clients
	ReasonBadClaims    = "bad_claims"     // other claims missing or wrong
	ReasonSessionEnded = "session_ended"  // the token's session was revoked or expired
)

// other replaces any label value not listed above, so a caller passing
// free text cannot create unbounded series.
const other = "other"

var (
	methods    = []string{"password", "provider", "passkey", "email"}
	limits     = []string{LimitIP, LimitGlobal, LimitCap, LimitSignIn, LimitName, LimitEmail}
	mailKinds  = []string{"verify", "changed", "reset", "signin"}
	reasons    = []string{ReasonMalformed, ReasonBadSignature, ReasonExpired, ReasonWrongIssuer, ReasonWrongAud, ReasonBadClaims, ReasonSessionEnded}
	eventTypes = []string{events.GuestCreated, events.GuestUpgraded, events.GuestExpired, events.SessionRevoked, events.RefreshReuseDetected, events.SignInThrottled, events.UserDeleted, events.GuestMerged, events.UserCreated}
)

var (
	guestsCreated  = counter("guests_created_total", "Guest users created.")
	guestsUpgraded = counter("guests_upgraded_total", "Guest users upgraded to named accounts.")
	guestsExpired  = counter("guests_expired_total", "Idle guest users deleted.")
	guestsMerged   = counter("guests_merged_total", "Guest users merged into the member who signed in from their session.")
	usersDeleted   = counter("users_deleted_total", "Users deleted (by themselves, the app or an admin; not expiry).")
	upgradedBy     = counterVec("guests_upgraded_by_method_total", "Guest users upgraded to named accounts, by method.", "method", methods)
	signInFailures = counter("signin_failures_total", "Sign-ins refused for a wrong name or password.")
	cacheHits      = counter("token_cache_hits_total", "Access tokens found in the verified-token cache.")
	cacheMisses    = counter("token_cache_misses_total", "Access tokens not in the verified-token cache, so verified in full.")

	rateLimited = counterVec("rate_limited_total", "Requests refused by a rate limit, by limit.", "limit", limits)
	tokenFails  = counterVec("token_verification_failures_total", "Tokens refused, by reason.", "reason", reasons)
	// By type, so a flood of noisy events shows as such, apart from the
	// lifecycle events that must never be dropped.
	webhookDropped = counterVec("webhook_dropped_total", "Webhook events dropped before their delivery (outbox full or too old, or not stored), by event type.", "type", eventTypes)

	mailQueued = counterVec("mail_queued_total", "Mail queued in the store's outbox, by kind.", "kind", mailKinds)
	mailSent   = counterVec("mail_sent_total", "Mail accepted by the SMTP server, by kind.", "kind", mailKinds)
	mailFailed = counterVec("mail_failed_total", "Attempts to send mail that failed, by kind.", "kind", mailKinds)
	mailGaveUp = counterVec("mail_given_up_total", "Mail dropped unsent (its last attempt failed, or it waited too long), by kind.", "kind", mailKinds)

	guestGauges = &gaugePair{
		a: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "live_guests"), "Guest users that currently exist.", nil, nil),
		b: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "kept_guests"), "Guest users kept past their idle expiry.", nil, nil),
	}

	population = &gaugePair{
		a: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "members"), "Users that are not guests.", nil, nil),
		b: prometheus.NewDesc(prometheus.BuildFQName(namespace, subsystem, "sessions"), "Stored sessions (live, or ended less than a sweep ago).", nil, nil),
	}

	collectors = []prometheus.Collector{guestsMerged, usersDeleted, upgradedBy, population, guestsCreated, guestsUpgraded, guestsExpired, signInFailures, cacheHits, cacheMisses, webhookDropped, rateLimited, tokenFails, guestGauges,
		mailQueued, mailSent, mailFailed, mailGaveUp}
)

func counter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help})
}

// counterVec creates the series for every known value up front, so they
// are exported as 0 and rate() works from the first increment.
func counterVec(name, help, label string, values []string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}, []string{label})
	for _, val := range values {
		v.WithLabelValues(val)
	}
	v.WithLabelValues(other)
	return v
}

// Register adds guestauth's collectors to reg, typically
// caddy.Context.GetMetricsRegistry(). Registering into the same registry
// again is a no-op, and a nil registry is ignored.
func Register(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok && are.ExistingCollector == c {
				continue
			}
			return err
		}
	}
	return nil
}

// TokenCacheHit counts a verified-token cache hit; it does not allocate.
func TokenCacheHit() { cacheHits.Inc() }

// TokenCacheMiss counts a verified-token cache miss.
func TokenCacheMiss() { cacheMisses.Inc() }

// GuestCreated counts a new guest user.
func GuestCreated() { guestsCreated.Inc() }

// GuestUpgraded counts a guest upgraded to a named account, by method
// (guest.upgraded's data.method; another value counts as "other").
func GuestUpgraded(method string) {
	guestsUpgraded.Inc()
	upgradedBy.WithLabelValues(known(method, methods)).Inc()
}

// GuestMerged counts a guest merged into a member.
func GuestMerged() { guestsMerged.Inc() }

// UserDeleted counts a user deleted.
func UserDeleted() { usersDeleted.Inc() }

// SetPopulationSource sets the function read at each scrape for
// caddy_guest_auth_members and caddy_guest_auth_sessions (the store's
// counters); with none both report 0.
func SetPopulationSource(source func() (members, sessions int64)) {
	population.source.Store(&source)
}

// GuestsExpired counts n expired guests deleted in one sweep.
func GuestsExpired(n int) {
	if n > 0 {
		guestsExpired.Add(float64(n))
	}
}

// RateLimited counts a request refused by limit, one of the Limit
// constants; any other value is counted as "other".
func RateLimited(limit string) {
	l := known(limit, limits)
	rateLimited.WithLabelValues(l).Inc()
}

// TokenRejected counts a token refused for reason, one of the Reason
// constants; any other value is counted as "other".
func TokenRejected(reason string) { tokenFails.WithLabelValues(known(reason, reasons)).Inc() }

// SignInFailed counts a sign-in refused for a wrong name or password.
func SignInFailed() { signInFailures.Inc() }

// WebhookDropped counts an event of type eventType dropped before its
// delivery: trimmed from the webhook outbox (too old, or beyond its
// bound), or never stored in it; it fits outbox.Config.OnDrop. A type not
// listed above is counted as "other".
func WebhookDropped(eventType string) {
	webhookDropped.WithLabelValues(known(eventType, eventTypes)).Inc()
}

// MailQueued, MailSent and MailFailed count mail of kind (mail.Config's
// OnQueued, OnSent, OnFailed); gaveUp also counts it given up.
func MailQueued(kind string) { mailQueued.WithLabelValues(known(kind, mailKinds)).Inc() }

// MailSent: see MailQueued.
func MailSent(kind string) { mailSent.WithLabelValues(known(kind, mailKinds)).Inc() }

// MailFailed: see MailQueued.
func MailFailed(kind string, gaveUp bool) {
	mailFailed.WithLabelValues(known(kind, mailKinds)).Inc()
	if gaveUp {
		mailGaveUp.WithLabelValues(known(kind, mailKinds)).Inc()
	}
}

func known(v string, values []string) string {
	if slices.Contains(values, v) {
		return v
	}
	return other
}

// SetGaugeSource sets the function read at each scrape for
// caddy_guest_auth_live_guests and caddy_guest_auth_kept_guests. Only the
// latest source is used; with none (or nil) both report 0. The source is
// called once per scrape, so it should be cheap, such as reading counters
// the store keeps.
func SetGaugeSource(source func() (live, kept int64)) {
	guestGauges.source.Store(&source)
}

// gaugePair is a Collector of two gauges read from one source rather than
// two GaugeFuncs, so each scrape calls the source once and reports a
// consistent pair.
type gaugePair struct {
	a, b   *prometheus.Desc
	source atomic.Pointer[func() (a, b int64)]
}

func (g *gaugePair) Describe(ch chan<- *prometheus.Desc) {
	ch <- g.a
	ch <- g.b
}

func (g *gaugePair) Collect(ch chan<- prometheus.Metric) {
	var a, b int64
	if src := g.source.Load(); src != nil && *src != nil {
		a, b = (*src)()
	}
	ch <- prometheus.MustNewConstMetric(g.a, prometheus.GaugeValue, float64(a))
	ch <- prometheus.MustNewConstMetric(g.b, prometheus.GaugeValue, float64(b))
}

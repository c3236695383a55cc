package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/internal/outbox"
)

// Webhook sends the module's events to an HTTP endpoint, one POST per
// event, signed per the Standard Webhooks specification: the body is the
// event's JSON, with the headers webhook-id (the event id, the same on
// every retry and from every node), webhook-timestamp (when the attempt
// was signed, Unix seconds) and webhook-signature ("v1," and the base64
// HMAC-SHA256 of id, ".", timestamp, ".", body). Receivers check them with
// the Go package github.com/guestauth/caddy-guestauth/webhook or any
// Standard Webhooks library, and de-duplicate on webhook-id (see
// docs/webhooks.md).
//
// Events wait for delivery in the store's outbox, on every kind of store
// (a bbolt file or PostgreSQL), never in memory: lifecycle events
// (guest.created, guest.upgraded, guest.expired, guest.merged,
// session.revoked, user.deleted) are stored in the transaction of the
// write they report, so an acknowledged write's event survives the
// process that made it, even one killed with SIGKILL; the others
// (refresh.reuse_detected, signin.throttled summaries) right after they
// happen. Every instance using the store with the same webhook URL
// delivers them, after a restart too: at least once, with the same
// webhook-id on every attempt, on which receivers de-duplicate.
// Deliveries are not strictly ordered (a retry may land after a later
// event): receivers order by the event's time. The outbox keeps at most
// queue_size events per URL (100000 by default), for at most 24h;
// beyond, the oldest are dropped and counted in
// caddy_guest_auth_webhook_dropped_total.
type Webhook struct {
	// URL receiving a POST per event. It must be https, except to a
	// loopback host (localhost, 127.0.0.0/8, ::1), where http is allowed.
	URL string `json:"url"`
	// Secret keying the webhook-signature HMAC-SHA256, shared with the
	// receiver. Either the Standard Webhooks form, `whsec_` followed by
	// standard base64 (padding optional), whose decoded bytes are the key
	// (generate one with `echo "whsec_$(openssl rand -base64 32)"`); or
	// any other non-empty string, a plain secret whose bytes as written
	// (UTF-8) are the key: receivers using a Standard Webhooks library
	// must then give it those bytes raw (JavaScript:
	// `new Webhook(Buffer.from(secret), {format: "raw"})`), or
	// `whsec_` + base64 of them, which is the same key. Use a
	// placeholder such as `{env.GUEST_AUTH_WEBHOOK_SECRET}`; it is
	// replaced, then parsed, when the config loads, and a `whsec_` secret
	// that is not valid base64 is a config error.
	Secret string `json:"secret"`
	// How many events may wait in the outbox for this URL (a receiver
	// down for long): beyond, the oldest are dropped and counted. Noisy
	// signin.throttled events are coalesced first (one summary per client
	// IP per minute) and delivered after the others. Default: 100000.
	QueueSize int `json:"queue_size,omitempty"`
	// Delivery attempts per event, with exponential backoff. Default: 6.
	MaxAttempts int `json:"max_attempts,omitempty"`
}

// setupEvents makes the emitter (log + optional webhook outbox) and
// registers the metrics with this config's registry.
func (g *GuestAuth) setupEvents(ctx caddy.Context) error {
	var sinks []events.Sink
	if w := g.Webhook; w != nil {
		// An unset placeholder leaves an empty secret: refused.
		ob, err := outbox.ForWebhook(
			events.WebhookConfig{URL: w.URL, MaxAttempts: w.MaxAttempts, Timeout: webhookTimeout, Now: g.now},
			caddy.NewReplacer().ReplaceKnown(w.Secret, ""), g.logger.Named("webhook"),
			outbox.Config{Store: g.shared.store, Now: g.now, OnDrop: metrics.WebhookDropped, MaxRows: w.QueueSize})
		if err != nil {
			return err
		}
		g.outbox = ob
		// The outbox stops with the config: when Caddy cancels its context
		// (unload or reload), or at Cleanup, whichever comes first.
		context.AfterFunc(ctx, g.stopEvents)
		sinks = append(sinks, ob)
	}
	g.events = events.NewEmitter(g.logger, sinks...)
	// Only a configured events app has subscribers; without one there is
	// nobody to tell (and no app to load).
	app, err := ctx.AppIfConfigured("events")
	switch {
	case errors.Is(err, caddy.ErrNotConfigured):
	case err != nil:
		return fmt.Errorf("getting events app: %w", err)
	default:
		g.caddyEvents, _ = app.(*caddyevents.App)
	}
	g.caddyCtx = ctx
	if err := metrics.Register(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	st := g.shared.store
	metrics.SetGaugeSource(func() (int64, int64) {
		live, kept, _ := st.GuestCounts(context.Background()) // a scrape has no context to pass on
		return live, kept
	})
	metrics.SetPopulationSource(func() (int64, int64) {
		s, err := st.Counts(context.Background())
		if err != nil {
			return 0, 0
		}
		return s.NormalUsers, s.Sessions
	})
	return nil
}

// stopEvents gives the events being stored in the outbox a few seconds to
// be, and stops delivering (what is left is delivered by the next start,
// or another instance). It may run twice (see setupEvents); the second
// call waits for the first.
func (g *GuestAuth) stopEvents() {
	if g.outbox == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.outbox.Stop(ctx); err != nil {
		g.logger.Warn("stopping the webhook outbox", zap.Error(err))
	}
}

// webhookTimeout bounds each webhook attempt.
const webhookTimeout = 10 * time.Second

// stager is the accounts.Stager of this handler: nil without a webhook.
func (g *GuestAuth) stager() accounts.Stager {
	if g.outbox == nil {
		return nil
	}
	return g.outbox.Stage
}

// observe is the accounts.Observer of this handler: the one place where a
// domain outcome is counted (metrics), logged and sent to the webhook
// (events), and emitted to Caddy's events app. user.kept is only logged;
// an event stored with its write is already in the outbox.
func (g *GuestAuth) observe(_ context.Context, ev events.Event, stored bool) {
	switch ev.Type {
	case events.GuestCreated:
		metrics.GuestCreated()
	case events.GuestUpgraded:
		method, _ := ev.Data["method"].(string)
		metrics.GuestUpgraded(method)
	case events.GuestExpired:
		metrics.GuestsExpired(1)
	case events.GuestMerged:
		metrics.GuestMerged()
	case events.UserDeleted:
		metrics.UserDeleted()
	}
	if ev.Type == accounts.UserKept {
		kept, _ := ev.Data["kept"].(bool)
		cause, _ := ev.Data["cause"].(string)
		admin, _ := ev.Data["admin"].(string)
		g.logger.Info(ev.Type, zap.String("user_id", ev.UserID), zap.Bool("kept", kept), zap.String("cause", cause), zap.String("admin", admin))
	} else if stored && g.outbox != nil {
		g.events.Log(ev)
		g.outbox.Nudge() // stored by this process: deliver it now
	} else {
		g.events.Emit(ev) // the outbox stores it
	}
	g.emitCaddyEvent(ev)
}

// emitCaddyEvent emits ev to Caddy's events app, when anything listens,
// named by events.CaddyName, from module http.handlers.guest_auth, with
// the event's data plus user_id and client_id when set.
func (g *GuestAuth) emitCaddyEvent(ev events.Event) {
	if g.caddyEvents == nil {
		return
	}
	name := events.CaddyName(ev.Type)
	if !g.caddyEvents.ShouldEmit(name) {
		return
	}
	data := make(map[string]any, len(ev.Data)+2)
	maps.Copy(data, ev.Data)
	if ev.UserID != "" {
		data["user_id"] = ev.UserID
	}
	if ev.ClientID != "" {
		data["client_id"] = ev.ClientID
	}
	g.caddyEvents.Emit(g.caddyCtx, name, data)
}

package caddymodule

import (
	"context"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/events"
	"github.com/guestauth/caddy-guestauth/metrics"
)

// Webhook sends the module's events to an HTTP endpoint.
type Webhook struct {
	// URL receiving a POST per event. It must be https, except to a
	// loopback host (localhost, 127.0.0.0/8, ::1), where http is allowed.
	URL string `json:"url"`
	// Secret keying the X-Guest-Auth-Signature header: HMAC-SHA256 of the
	// X-Guest-Auth-Timestamp value, a ".", and the body. Use a placeholder
	// such as `{env.GUEST_AUTH_WEBHOOK_SECRET}`.
	Secret string `json:"secret"`
	// How many lifecycle and security events may wait for delivery; beyond
	// that new ones are dropped (and counted) rather than slowing requests.
	// Noisy signin.throttled events are coalesced (one summary per client
	// IP per minute) and wait in a queue of their own, so they never take
	// these places. Default: 1000.
	QueueSize int `json:"queue_size,omitempty"`
	// Delivery attempts per event, with exponential backoff. Default: 6.
	MaxAttempts int `json:"max_attempts,omitempty"`
}

// setupEvents makes the emitter (log + optional webhook) and registers the
// metrics with this config's registry.
func (g *GuestAuth) setupEvents(ctx caddy.Context) error {
	var sinks []events.Sink
	if g.Webhook != nil {
		secret := caddy.NewReplacer().ReplaceKnown(g.Webhook.Secret, "")
		wh, err := events.NewWebhook(events.WebhookConfig{
			URL:         g.Webhook.URL,
			Secret:      []byte(secret),
			QueueSize:   g.Webhook.QueueSize,
			MaxAttempts: g.Webhook.MaxAttempts,
			OnDrop:      metrics.WebhookDropped,
			Now:         g.now,
		}, g.logger.Named("webhook"))
		if err != nil {
			return err
		}
		wh.Start()
		g.webhook = wh
		// The sender ends with the config: when Caddy cancels its context
		// (unload or reload), or at Cleanup, whichever comes first.
		context.AfterFunc(ctx, g.stopEvents)
		sinks = append(sinks, wh)
	}
	g.events = events.NewEmitter(g.logger, sinks...)
	if err := metrics.Register(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	st := g.shared.store
	metrics.SetGaugeSource(func() (int64, int64) {
		live, kept, _ := st.GuestCounts(context.Background()) // a scrape has no context to pass on
		return live, kept
	})
	return nil
}

// stopEvents gives queued webhook deliveries a few seconds to finish. It
// may run twice (see setupEvents); the second call waits for the first.
func (g *GuestAuth) stopEvents() {
	if g.webhook == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.webhook.Stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		g.logger.Warn("stopping webhook", zap.Error(err))
	}
}

// emit reports an event (log, webhook) and counts it.
func (g *GuestAuth) emit(ev events.Event) {
	switch ev.Type {
	case events.GuestCreated:
		metrics.GuestCreated()
	case events.GuestUpgraded:
		metrics.GuestUpgraded()
	case events.GuestExpired:
		metrics.GuestsExpired(1)
	}
	g.events.Emit(ev)
}

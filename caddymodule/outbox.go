package caddymodule

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/storage"
)

// The webhook outbox, on a store shared by several processes (PostgreSQL):
// lifecycle events are stored in the transaction of the write they report
// (accounts.Stager), the others (refresh.reuse_detected, coalesced
// signin.throttled summaries, an event whose write did not store it) right
// after, through the webhook's queue (events.WebhookConfig.Spool); every
// process configured with the same webhook URL runs an outboxDeliverer,
// which claims due rows with a lease and posts them. A process that dies
// mid-delivery leaves its rows to the others once the lease ends.

// Outbox defaults.
const (
	// outboxBatch rows are claimed at once: small, so one slow receiver
	// holds few rows and a dead process leaves few to wait for its lease.
	outboxBatch = 4
	// outboxPoll is how often other processes' rows are looked for when
	// none were found (this process's own are delivered at once).
	outboxPoll = time.Second
	// outboxMaxAge and outboxMaxRows bound the rows of one webhook: older
	// rows, and the oldest beyond the count (a receiver down for long),
	// are dropped and counted in caddy_guest_auth_webhook_dropped_total.
	outboxMaxAge  = 24 * time.Hour
	outboxMaxRows = 100000
	// outboxTrimEvery is how often a process trims.
	outboxTrimEvery = time.Minute
)

type outboxDeliverer struct {
	store   storage.Outbox
	wh      *events.Webhook
	target  string
	now     func() time.Time
	lease   time.Duration
	poll    time.Duration
	maxAge  time.Duration
	maxRows int
	logger  *zap.Logger

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

func newOutboxDeliverer(st storage.Outbox, wh *events.Webhook, timeout time.Duration, now func() time.Time, logger *zap.Logger) *outboxDeliverer {
	return &outboxDeliverer{
		store:   st,
		wh:      wh,
		target:  wh.Target(),
		now:     now,
		lease:   timeout + 5*time.Second, // a batch's attempts run at once: this covers them all timing out
		poll:    outboxPoll,
		maxAge:  outboxMaxAge,
		maxRows: outboxMaxRows,
		logger:  logger,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

// record is the outbox row of a prepared event.
func (d *outboxDeliverer) record(ev events.Event, body []byte) storage.OutboxRecord {
	return storage.OutboxRecord{ID: ev.ID, Type: ev.Type, Target: d.target, Body: body, Noisy: events.Noisy(ev.Type), CreatedAt: d.now()}
}

// stager is the accounts.Stager storing events for this webhook.
func (d *outboxDeliverer) stager() accounts.Stager {
	return func(evs []events.Event) ([]events.Event, []storage.OutboxRecord, error) {
		prepared := make([]events.Event, 0, len(evs))
		recs := make([]storage.OutboxRecord, 0, len(evs))
		for _, ev := range evs {
			pe, body, err := d.wh.Encode(ev)
			if err != nil {
				return nil, nil, err
			}
			prepared = append(prepared, pe)
			recs = append(recs, d.record(pe, body))
		}
		return prepared, recs, nil
	}
}

// spool stores an event the webhook queued (see events.WebhookConfig.Spool).
func (d *outboxDeliverer) spool(ctx context.Context, id, typ string, body []byte) error {
	err := d.store.OutboxPut(ctx, []storage.OutboxRecord{{ID: id, Type: typ, Target: d.target, Body: body, Noisy: events.Noisy(typ), CreatedAt: d.now()}})
	if err == nil {
		d.nudge()
	}
	return err
}

// nudge wakes the delivery loop: a row of this process is due.
func (d *outboxDeliverer) nudge() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *outboxDeliverer) start() {
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go d.run(ctx)
}

// stop ends the loop, cutting short the attempt in flight: its row is
// delivered again, by this or another process, after its lease.
func (d *outboxDeliverer) stop() {
	d.once.Do(func() {
		if d.cancel != nil {
			d.cancel()
			<-d.done
		}
	})
}

func (d *outboxDeliverer) run(ctx context.Context) {
	defer close(d.done)
	var trimmed time.Time
	for ctx.Err() == nil {
		if d.now().Sub(trimmed) >= outboxTrimEvery {
			trimmed = d.now()
			d.trim(ctx)
		}
		n, err := d.deliverBatch(ctx)
		if err != nil && ctx.Err() == nil {
			d.logger.Warn("webhook outbox: claiming events", zap.Error(err))
		}
		if n == outboxBatch && err == nil {
			continue // there may be more
		}
		t := time.NewTimer(d.poll)
		select {
		case <-ctx.Done():
		case <-d.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (d *outboxDeliverer) trim(ctx context.Context) {
	types, err := d.store.OutboxTrim(ctx, d.target, d.now().Add(-d.maxAge), d.maxRows)
	if err != nil {
		if ctx.Err() == nil {
			d.logger.Warn("webhook outbox: trimming", zap.Error(err))
		}
		return
	}
	for _, typ := range types {
		metrics.WebhookDropped(typ)
	}
	if len(types) > 0 {
		d.logger.Warn("webhook outbox full or too old; dropped events", zap.Int("events", len(types)), zap.Duration("max_age", d.maxAge), zap.Int("max_rows", d.maxRows))
	}
}

// deliverBatch claims due rows and tries each once, and reports how many
// it claimed.
func (d *outboxDeliverer) deliverBatch(ctx context.Context) (int, error) {
	recs, err := d.store.OutboxClaim(ctx, d.target, d.now(), d.lease, outboxBatch)
	if err != nil {
		return 0, err
	}
	// At once, so the lease need only cover one attempt: the order of a
	// batch's deliveries is not kept (nor is it across nodes).
	var wg sync.WaitGroup
	for _, r := range recs {
		wg.Go(func() { d.deliver(ctx, r) })
	}
	wg.Wait()
	return len(recs), nil
}

// deliver makes one attempt of r: a delivered or refused row is deleted,
// a failed one is due again after the backoff, until the last attempt.
func (d *outboxDeliverer) deliver(ctx context.Context, r storage.OutboxRecord) {
	retry, wait, err := d.wh.Attempt(ctx, r.ID, r.Type, r.Body)
	if ctx.Err() != nil {
		return // stopping: the row waits for its lease to end
	}
	fields := []zap.Field{zap.String("event_id", r.ID), zap.String("type", r.Type), zap.Int("attempt", r.Attempts)}
	// A store that fails here leaves the row to its lease: delivered
	// again later, never lost.
	bg := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		err = d.store.OutboxDelete(bg, r.ID)
	case !retry:
		d.logger.Error("webhook refused event; not retrying", append(fields, zap.Error(err))...)
		err = d.store.OutboxDelete(bg, r.ID)
	case r.Attempts >= d.wh.MaxAttempts():
		d.logger.Error("webhook delivery failed; giving up", append(fields, zap.Error(err))...)
		err = d.store.OutboxDelete(bg, r.ID)
	default:
		d.logger.Debug("webhook delivery failed; will retry", append(fields, zap.Error(err))...)
		if wait < 0 {
			wait = d.wh.Backoff(r.Attempts)
		}
		err = d.store.OutboxRetry(bg, r.ID, d.now().Add(wait))
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		d.logger.Warn("webhook outbox: updating a row", append(fields, zap.Error(err))...)
	}
}

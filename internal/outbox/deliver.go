package outbox

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/storage"
)

// run delivers until ctx ends: it claims due records (at once when this
// process stored one, else every poll), trims the outbox every trimEvery,
// and flushes the coalescing intervals that ended.
func (o *Outbox) run(ctx context.Context) {
	defer close(o.runDone)
	poll := time.NewTicker(o.poll)
	defer poll.Stop()
	tick := time.NewTicker(o.tick)
	defer tick.Stop()
	var trimmed time.Time
	for ctx.Err() == nil {
		select { // not starved by a backlog of records
		case <-tick.C:
			o.flushCoalesced()
		default:
		}
		if now := o.now(); now.Sub(trimmed) >= trimEvery {
			trimmed = now
			o.trim(ctx)
		}
		n, err := o.deliverBatch(ctx)
		if err != nil && ctx.Err() == nil {
			o.logger.Warn("webhook outbox: claiming events", zap.Error(err))
		}
		if n == o.batch && err == nil {
			continue // there may be more
		}
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				waiting = false
			case <-o.wake:
				waiting = false
			case <-poll.C:
				waiting = false
			case <-tick.C:
				o.flushCoalesced()
			}
		}
	}
}

// flushCoalesced stores the summaries of the coalescing intervals that
// ended.
func (o *Outbox) flushCoalesced() {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.stopped {
		return // Stop flushes them all
	}
	for _, ev := range o.coal.flush(o.now(), false) {
		o.storeAsync(ev, o.noisySem)
	}
}

// trim drops the records past MaxAge, then the oldest beyond MaxRows, and
// counts them as dropped.
func (o *Outbox) trim(ctx context.Context) {
	types, err := o.store.OutboxTrim(ctx, o.target, o.now().Add(-o.maxAge), o.maxRows)
	if err != nil {
		if ctx.Err() == nil {
			o.logger.Warn("webhook outbox: trimming", zap.Error(err))
		}
		return
	}
	for _, typ := range types {
		o.count(typ)
	}
	if len(types) > 0 {
		o.logger.Warn("webhook outbox full or too old; dropped events", zap.String("url", o.wh.LogURL()), zap.Int("events", len(types)),
			zap.Duration("max_age", o.maxAge), zap.Int("max_rows", o.maxRows))
	}
}

// deliverBatch claims due records and tries each once, and reports how
// many it claimed.
func (o *Outbox) deliverBatch(ctx context.Context) (int, error) {
	recs, err := o.store.OutboxClaim(ctx, o.target, o.now(), o.lease, o.batch)
	if err != nil {
		return 0, err
	}
	// At once, so the lease need only cover one attempt: the order of a
	// batch's deliveries is not kept (nor is it across processes), but
	// lifecycle records are claimed before noisy ones.
	var wg sync.WaitGroup
	for _, r := range recs {
		wg.Go(func() { o.deliver(ctx, r) })
	}
	wg.Wait()
	return len(recs), nil
}

// deliver makes one attempt of r: a delivered or refused record is
// deleted, a failed one is due again after the backoff (or the receiver's
// Retry-After), until the last attempt, which gives it up.
func (o *Outbox) deliver(ctx context.Context, r storage.OutboxRecord) {
	retry, wait, err := o.wh.Attempt(ctx, r.ID, r.Body)
	if ctx.Err() != nil {
		return // stopping: the record waits for its lease to end
	}
	fields := []zap.Field{zap.String("url", o.wh.LogURL()), zap.String("event_id", r.ID), zap.String("type", r.Type), zap.Int("attempt", r.Attempts)}
	// A store that fails here leaves the record to its lease: delivered
	// again later, never lost.
	bg := context.WithoutCancel(ctx)
	switch {
	case err == nil:
		err = o.store.OutboxDelete(bg, r.ID)
	case !retry:
		o.logger.Error("webhook refused event; not retrying", append(fields, zap.Error(err))...)
		err = o.store.OutboxDelete(bg, r.ID)
	case r.Attempts >= o.wh.MaxAttempts():
		o.logger.Error("webhook delivery failed; giving up", append(fields, zap.Error(err))...)
		err = o.store.OutboxDelete(bg, r.ID)
	default:
		o.logger.Debug("webhook delivery failed; will retry", append(fields, zap.Error(err))...)
		if wait < 0 {
			wait = o.wh.Backoff(r.Attempts)
		}
		err = o.store.OutboxRetry(bg, r.ID, o.now().Add(wait))
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		o.logger.Warn("webhook outbox: updating a record", append(fields, zap.Error(err))...)
	}
}

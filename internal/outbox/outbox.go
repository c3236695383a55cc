// Package outbox is the one delivery path of the module's events to a
// webhook, for every storage backend. Events wait in the store's outbox
// (storage.Outbox), never in memory: a lifecycle event is stored in the
// transaction of the write it reports (Stage, the accounts.Stager), so an
// acknowledged write's event survives the process that made it, kill -9
// included; an event with no write of its own (refresh.reuse_detected, a
// summary of coalesced signin.throttled events, an event whose write did
// not store it) is stored right after it happens (Enqueue, the
// events.Sink). Every process using the store with the same webhook URL
// delivers them: it claims due records with a lease, POSTs each
// (events.Webhook.Attempt), then deletes it, or makes it due again after
// the backoff, or gives it up after the last attempt. A process that dies
// mid-delivery leaves its records to the next claim once the lease ends
// (bbolt ends every lease when the file is opened again). Delivery is at
// least once, with the same event id on every attempt by any process.
package outbox

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/webhook"
)

// Store is what the outbox needs from a store; every storage.Backend has
// it (storage.Outbox documents the methods).
type Store interface {
	OutboxPut(ctx context.Context, recs []storage.OutboxRecord) error
	OutboxClaim(ctx context.Context, target string, now time.Time, lease time.Duration, limit int) ([]storage.OutboxRecord, error)
	OutboxDelete(ctx context.Context, id string) error
	OutboxRetry(ctx context.Context, id string, at time.Time) error
	OutboxTrim(ctx context.Context, target string, before time.Time, maxRows int) ([]string, error)
	OutboxLen(ctx context.Context, target string) (int, error)
}

// Defaults of Config.
const (
	// DefaultMaxRows and DefaultMaxAge bound the records of one webhook:
	// older records, and the oldest beyond the count (a receiver down for
	// long), are dropped and counted (Config.OnDrop).
	DefaultMaxRows = 100000
	DefaultMaxAge  = 24 * time.Hour
	// DefaultCoalesceInterval is the interval over which noisy events with
	// the same type, user, client and client IP are folded into one
	// summary (see events.Noisy).
	DefaultCoalesceInterval = time.Minute
	// DefaultBatch records are claimed at once: few, so one slow receiver
	// holds few records and a dead process leaves few to wait for their
	// lease.
	DefaultBatch = 4
	// DefaultPoll is how often other processes' records are looked for
	// when none were found (this process's own are delivered at once).
	DefaultPoll = time.Second
	// trimEvery is how often a process trims.
	trimEvery = time.Minute
	// maxNoisyKeys bounds the keys noisy events are coalesced for at once;
	// an event with a new key beyond that is dropped (and counted).
	maxNoisyKeys = 10000
	// maxPuts and maxNoisyPuts bound the events being stored at once after
	// they happened (Enqueue never waits for a store): beyond, new ones are
	// dropped and counted. Noisy events have their own bound, so a flood
	// of them never takes a lifecycle event's place.
	maxPuts      = 256
	maxNoisyPuts = 16
	// putTimeout bounds one store of an event after it happened; a failed
	// store is tried again with the webhook's backoff, up to its attempts.
	putTimeout = 10 * time.Second
)

// Config configures an Outbox. Store and Webhook are required.
type Config struct {
	Store   Store
	Webhook *events.Webhook
	// Now is the clock of the records' times, leases and coalescing
	// (default time.Now).
	Now func() time.Time
	// Logger receives delivery failures (the webhook's logger when nil);
	// bodies are never logged.
	Logger *zap.Logger
	// OnDrop, when set, is called with the type of each event dropped:
	// trimmed from the outbox (too old, or beyond MaxRows), or never
	// stored (the store failed, or too many were being stored). It must
	// not block.
	OnDrop func(eventType string)
	// MaxRows and MaxAge bound the records waiting for this webhook
	// (DefaultMaxRows, DefaultMaxAge when 0).
	MaxRows int
	MaxAge  time.Duration
	// CoalesceInterval: see DefaultCoalesceInterval (used when 0).
	CoalesceInterval time.Duration
	// Lease is how long a claimed record is left to its claimer (default:
	// the webhook's attempt timeout and 5s). Batch and Poll: see
	// DefaultBatch and DefaultPoll (used when 0).
	Lease time.Duration
	Batch int
	Poll  time.Duration
}

// Outbox stores a webhook's events in the store and delivers them. Create
// it with New, call Start, and Stop when done.
type Outbox struct {
	store   Store
	wh      *events.Webhook
	target  string
	now     func() time.Time
	logger  *zap.Logger
	onDrop  func(string)
	maxRows int
	maxAge  time.Duration
	lease   time.Duration
	batch   int
	poll    time.Duration
	coal    *coalescer
	tick    time.Duration // how often ended coalescing intervals are flushed

	// mu orders Enqueue's stores against Stop: nothing is accepted once
	// Stop has begun.
	mu       sync.RWMutex
	started  bool
	stopped  bool
	puts     sync.WaitGroup
	lifeSem  chan struct{}
	noisySem chan struct{}
	dropWarn rate.Sometimes

	wake     chan struct{}
	putCtx   context.Context // cancelled when Stop's deadline passes
	putStop  context.CancelFunc
	runStop  context.CancelFunc
	runDone  chan struct{}
	stopOnce sync.Once
}

var _ events.Sink = (*Outbox)(nil)

// ForWebhook makes and starts the outbox of cfg delivering to the webhook
// wh describes, keyed by secret as configured (webhook.ParseSecret; an
// empty one is refused: events.NewWebhook).
func ForWebhook(wh events.WebhookConfig, secret string, logger *zap.Logger, cfg Config) (*Outbox, error) {
	if secret != "" {
		key, err := webhook.ParseSecret(secret)
		if err != nil {
			return nil, err
		}
		wh.Secret = key
	}
	w, err := events.NewWebhook(wh, logger)
	if err != nil {
		return nil, err
	}
	cfg.Webhook = w
	ob, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ob.Start()
	return ob, nil
}

// New returns an Outbox that is not yet started.
func New(cfg Config) (*Outbox, error) {
	if cfg.Store == nil || cfg.Webhook == nil {
		return nil, errors.New("outbox: a store and a webhook are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = cfg.Webhook.Logger()
	}
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = DefaultMaxRows
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.CoalesceInterval <= 0 {
		cfg.CoalesceInterval = DefaultCoalesceInterval
	}
	if cfg.Lease <= 0 {
		cfg.Lease = cfg.Webhook.Timeout() + 5*time.Second // a batch's attempts run at once: this covers them all timing out
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	o := &Outbox{
		store: cfg.Store, wh: cfg.Webhook, target: cfg.Webhook.Target(), now: cfg.Now,
		logger: cfg.Logger, onDrop: cfg.OnDrop, maxRows: cfg.MaxRows, maxAge: cfg.MaxAge,
		lease: cfg.Lease, batch: cfg.Batch, poll: cfg.Poll,
		coal:     newCoalescer(cfg.CoalesceInterval, maxNoisyKeys),
		tick:     max(cfg.CoalesceInterval/4, time.Millisecond),
		lifeSem:  make(chan struct{}, maxPuts),
		noisySem: make(chan struct{}, maxNoisyPuts),
		dropWarn: rate.Sometimes{Interval: time.Minute},
		wake:     make(chan struct{}, 1),
		runDone:  make(chan struct{}),
	}
	o.putCtx, o.putStop = context.WithCancel(context.Background())
	return o, nil
}

// Target names this webhook's records in the store (events.Webhook.Target).
func (o *Outbox) Target() string { return o.target }

// Start launches the delivery goroutine and the coalescing timer. Calling
// it again, or after Stop, does nothing.
func (o *Outbox) Start() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.started || o.stopped {
		return
	}
	o.started = true
	ctx, cancel := context.WithCancel(context.Background())
	o.runStop = cancel
	go o.run(ctx)
}

// Stop refuses new events, stores the summaries of the noisy events still
// being coalesced, waits (until ctx is done) for the events being stored,
// then stops delivering: an attempt in flight is cut short, and its record
// is delivered again after its lease, by this process's next start or by
// another. It returns ctx's error if events were left unstored (they are
// counted as dropped).
func (o *Outbox) Stop(ctx context.Context) error {
	var err error
	o.stopOnce.Do(func() {
		o.mu.Lock()
		o.stopped = true
		started := o.started
		o.mu.Unlock()
		for _, ev := range o.coal.flush(o.now(), true) {
			o.storeAsync(ev, o.noisySem)
		}
		done := make(chan struct{})
		go func() {
			o.puts.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			o.putStop() // the stores still running give up, and count their events
			<-done
			err = ctx.Err()
		}
		o.putStop()
		if started {
			o.runStop()
			<-o.runDone
		}
	})
	return err
}

// Stage is the accounts.Stager of this outbox: it prepares events (their
// ids and times fixed, see events.Prepare) and returns them with their
// records, which the write they report stores in its own transaction.
func (o *Outbox) Stage(evs []events.Event) ([]events.Event, []storage.OutboxRecord, error) {
	prepared := make([]events.Event, 0, len(evs))
	recs := make([]storage.OutboxRecord, 0, len(evs))
	for _, ev := range evs {
		pe, body, err := o.wh.Encode(ev)
		if err != nil {
			return nil, nil, err
		}
		prepared = append(prepared, pe)
		recs = append(recs, o.record(pe, body))
	}
	return prepared, recs, nil
}

// record is the outbox record of a prepared event.
func (o *Outbox) record(ev events.Event, body []byte) storage.OutboxRecord {
	return storage.OutboxRecord{ID: ev.ID, Type: ev.Type, Target: o.target, Body: body, Noisy: events.Noisy(ev.Type), CreatedAt: o.now()}
}

// Enqueue implements events.Sink: ev, which no write stored, is stored
// now, in the background: a noisy one coalesced first (sent at once if it
// starts a burst, else counted into a summary stored when its interval
// ends). An event already stored with its write is not given to Enqueue
// (see events.Emitter.Log), only announced with Nudge. It never waits: it
// reports false when the event was dropped (the outbox is stopped, or too
// many events are being stored; counted).
func (o *Outbox) Enqueue(ev events.Event) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.stopped {
		return false
	}
	if !events.Noisy(ev.Type) {
		return o.storeAsync(ev, o.lifeSem)
	}
	send, leads, ok := o.coal.add(ev, o.now())
	if !ok {
		o.drop(ev.Type, "too many noisy keys being coalesced")
	}
	for i, s := range send {
		stored := o.storeAsync(s, o.noisySem)
		if leads && i == len(send)-1 {
			ok = stored
		}
	}
	return ok
}

// storeAsync stores ev in the background, holding a place in sem, or
// drops it (counted) when sem is full. It is called under o.mu's read
// lock, or by Stop once nothing else can call it: so no store starts
// after Stop waits for them.
func (o *Outbox) storeAsync(ev events.Event, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
	default:
		o.drop(ev.Type, "too many events being stored")
		return false
	}
	o.puts.Add(1)
	go func() {
		defer o.puts.Done()
		defer func() { <-sem }()
		o.put(ev)
	}()
	return true
}

// put puts ev in the store, trying again with the webhook's backoff
// while the store fails, until the last attempt or Stop's deadline.
func (o *Outbox) put(ev events.Event) {
	pe, body, err := o.wh.Encode(ev)
	if err != nil {
		o.logger.Error("webhook: cannot encode event; dropped", zap.String("event_id", ev.ID), zap.String("type", ev.Type), zap.Error(err))
		o.count(ev.Type)
		return
	}
	rec := o.record(pe, body)
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(o.putCtx, putTimeout)
		err = o.store.OutboxPut(ctx, []storage.OutboxRecord{rec})
		cancel()
		if err == nil {
			o.Nudge()
			return
		}
		if attempt >= o.wh.MaxAttempts() || o.putCtx.Err() != nil || !sleep(o.putCtx, o.wh.Backoff(attempt)) {
			o.logger.Error("webhook outbox: storing an event failed; dropped", zap.String("event_id", rec.ID), zap.String("type", rec.Type), zap.Int("attempts", attempt), zap.Error(err))
			o.count(rec.Type)
			return
		}
	}
}

// drop counts an event not stored, with a warning at most once a minute:
// a flood of drops must not become a flood of logs.
func (o *Outbox) drop(typ, why string) {
	o.count(typ)
	o.dropWarn.Do(func() {
		o.logger.Warn("webhook outbox: dropping events", zap.String("url", o.wh.LogURL()), zap.String("type", typ), zap.String("reason", why))
	})
}

func (o *Outbox) count(typ string) {
	if o.onDrop != nil {
		o.onDrop(typ)
	}
}

// Nudge wakes the delivery loop: a record this process stored (with a
// write, see Stage) is due. It never waits.
func (o *Outbox) Nudge() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

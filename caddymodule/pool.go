package caddymodule

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// storePool shares one open store (and its keyring) between every config
// that names it, keyed by its storage.Module.StoreKey. A reload provisions
// the new config before cleaning up the old one, so the store stays open
// across reloads and is never reopened (bbolt's exclusive lock would make a
// reopen wait on ourselves).
var storePool = caddy.NewUsagePool()

type sharedStore struct {
	store store
	keys  *tokens.Keyring
	// ctx is the context of the store's own background work (the session
	// sweeper): the store outlives the configs that use it, so it is not
	// any one config's; Destruct cancels it, and the sweeper closes done
	// when it returns.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	// pruneMu lets one guest sweep run at a time on this file.
	pruneMu sync.Mutex
	// hits counts the limit refusals of the configs using this store,
	// added to its daily counters by flushLimits.
	hits accounts.LimitHits

	mu       sync.Mutex
	handlers []*GuestAuth // configs using this file, newest last
}

func (s *sharedStore) attach(g *GuestAuth) {
	s.mu.Lock()
	s.handlers = append(s.handlers, g)
	s.mu.Unlock()
}

func (s *sharedStore) detach(g *GuestAuth) {
	s.mu.Lock()
	s.handlers = slices.DeleteFunc(s.handlers, func(h *GuestAuth) bool { return h == g })
	s.mu.Unlock()
}

// checkIssuer refuses g when another handler of the same Caddy config uses
// this file and either of them has no configured issuer. Handlers sharing a
// file share its signing keys; an issuer taken from each request's Host
// would let a token minted by one site be replayed at the other under the
// first site's Host. Handlers that name the same issuer are, by their
// config, one authority: they accept each other's tokens when they serve
// the token's client. (During a reload the previous config's handlers are
// still attached; they are not compared.)
func (s *sharedStore) checkIssuer(g *GuestAuth) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range s.handlers {
		if h != g && h.config == g.config && (h.issuer == "" || g.issuer == "") {
			return fmt.Errorf("several guest_auth handlers use the storage file %s, and not all of them set an issuer: "+
				"their tokens would be accepted by one another; set issuer in each (the URL of the site's own origin), "+
				"or give each its own storage", g.poolKey)
		}
	}
	return nil
}

// handler is the newest config using this file (its settings, such as
// guest_ttl, apply to admin operations), or nil.
func (s *sharedStore) handler() *GuestAuth {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.handlers) == 0 {
		return nil
	}
	return s.handlers[len(s.handlers)-1]
}

// Destruct stops the sweeper, then closes the file.
func (s *sharedStore) Destruct() error {
	s.cancel()
	<-s.done
	return s.store.Close()
}

// Session sweeping: ended sessions are deleted every sweepInterval, in
// transactions of at most sweepBatch sessions so writers never wait long.
const (
	sweepInterval = time.Minute
	sweepBatch    = 500
)

// limitFlushInterval is how often the limit refusals counted in memory
// (metrics.RateLimited) are added to the store's daily counters: a refused
// request costs no store write, and a crash loses at most this long's
// refusal counts of this process.
const limitFlushInterval = 10 * time.Second

// compactEvery: the counters are compacted every minute.
const compactEvery = 6

// flushLimitHits adds the limit refusals counted in hits since the last
// flush to the store's daily counters (series limit.<limit>), dated now;
// what the store refuses is kept for the next flush.
func flushLimitHits(ctx context.Context, st storage.DailyStore, hits *accounts.LimitHits, now time.Time) error {
	m := hits.Take()
	if len(m) == 0 {
		return nil
	}
	var t storage.Tally
	for limit, n := range m {
		t.Add(now, storage.SeriesLimitHit+limit, n)
	}
	if err := st.AddDaily(ctx, t.Counts()); err != nil {
		hits.Return(m)
		return err
	}
	return nil
}

// flushLimits runs flushLimitHits every limitFlushInterval for the life of
// the open store, and once more when it closes; every compactEvery flushes
// it compacts the store's counters (storage.DailyStore.CompactCounters),
// on one process at a time.
func (s *sharedStore) flushLimits() {
	log := caddy.Log().Named("guest_auth.limits")
	t := time.NewTicker(limitFlushInterval)
	defer t.Stop()
	for tick := 1; ; tick++ {
		if tick%compactEvery == 0 {
			_, err := s.store.TryLockSweep(s.ctx, "counters", func(ctx context.Context) error {
				return s.store.CompactCounters(ctx, time.Now())
			})
			if err != nil && s.ctx.Err() == nil {
				log.Warn("compacting the dashboard's counters", zap.Error(err))
			}
		}
		select {
		case <-s.ctx.Done():
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := flushLimitHits(ctx, s.store, &s.hits, time.Now()); err != nil {
				log.Warn("storing the limit counts", zap.Error(err))
			}
			return
		case <-t.C:
			if err := flushLimitHits(s.ctx, s.store, &s.hits, time.Now()); err != nil {
				log.Warn("storing the limit counts", zap.Error(err))
			}
		}
	}
}

// sweep runs for the life of the open file: exactly one per store.
func (s *sharedStore) sweep() {
	defer close(s.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(s.flushLimits)
	log := caddy.Log().Named("guest_auth.sweeper")
	accounts.SweepSessionsEvery(s.ctx, s.store, sweepInterval, sweepBatch, func(n int, err error) {
		if err != nil {
			log.Error("sweeping sessions", zap.Error(err))
		} else if n > 0 {
			log.Info("sessions.expired", zap.Int("count", n))
		}
	})
}

// openShared opens the store with open, or shares the one open under key.
func openShared(ctx context.Context, key string, open func(context.Context) (storage.Backend, error)) (*sharedStore, error) {
	v, _, err := storePool.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := open(ctx)
		if err != nil {
			return nil, err
		}
		keys, err := tokens.LoadKeyring(ctx, st)
		if err != nil {
			st.Close()
			return nil, err
		}
		sh := &sharedStore{store: st, keys: keys, done: make(chan struct{})}
		sh.ctx, sh.cancel = context.WithCancel(context.WithoutCancel(ctx))
		go sh.sweep()
		return sh, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*sharedStore), nil
}

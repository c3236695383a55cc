package caddymodule

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// background runs this config's activity flusher and guest sweeper. Their
// context is a child of the config's: they end when Caddy cancels it on
// unloading the config (the flusher after a last flush), or when Cleanup
// cancels it, and done is closed once both have returned.
type background struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (g *GuestAuth) startBackground(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	g.bg = &background{cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		g.activity.Run(ctx, time.Duration(g.ActivityFlushInterval), func(err error) {
			g.logger.Error("recording user activity", zap.Error(err))
		})
	})
	wg.Go(func() {
		t := time.NewTicker(time.Duration(g.SweepInterval))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if *g.GuestTTL > 0 {
					if err := g.autoPrune(ctx); err != nil {
						g.logger.Error("expiring guests", zap.Error(err))
					}
				}
				if err := g.retireKeys(ctx); err != nil {
					g.logger.Error("retiring signing keys", zap.Error(err))
				}
			}
		}
	})
	go func() {
		wg.Wait()
		close(g.bg.done)
	}()
}

// stopBackground ends the background work (if the config's context has not
// already) and waits for it.
func (g *GuestAuth) stopBackground() {
	if g.bg != nil {
		g.bg.cancel()
		<-g.bg.done
	}
}

// autoPrune is the periodic sweep, skipped while another instance (or
// another config of this one) runs it.
func (g *GuestAuth) autoPrune(ctx context.Context) error {
	_, err := g.shared.store.TryLockSweep(ctx, "guests", func(ctx context.Context) error {
		_, err := g.prune(ctx, false)
		return err
	})
	return err
}

// maxTokenLifetime bounds how long a token this config signs stays valid
// at a verifier: the longest lifetime of the tokens it signs (access and
// ID tokens, identity assertions) plus the clock skew allowed.
func (g *GuestAuth) maxTokenLifetime() time.Duration {
	d := time.Duration(g.AccessTokenLifetime)
	if g.Assertion != nil {
		d = max(d, time.Duration(g.Assertion.Lifetime))
	}
	return d + time.Duration(*g.ClockSkew)
}

// retireKeys deletes the signing keys rotated out long enough ago that
// every token they signed has expired (tokens.Keyring.RetireKeys), one
// instance at a time, under the store's sweep lock.
func (g *GuestAuth) retireKeys(ctx context.Context) error {
	run := func(ctx context.Context) error {
		kids, err := g.shared.keys.RetireKeys(ctx, g.now(), g.maxTokenLifetime())
		if len(kids) > 0 {
			g.logger.Info("retired signing keys", zap.Strings("kids", kids))
		}
		return err
	}
	_, err := g.shared.store.TryLockSweep(ctx, "keys", run)
	return err
}

// prune runs one sweep. The store's lock keeps sweeps of several configs
// (during a reload, or sites sharing a file) from running at once.
func (g *GuestAuth) prune(ctx context.Context, dryRun bool) (*accounts.PruneReport, error) {
	g.shared.pruneMu.Lock()
	defer g.shared.pruneMu.Unlock()
	// Judge idleness on fresh data: a real run flushes the recorded
	// activity first; a dry run, which writes nothing, reads it in memory.
	if !dryRun {
		if err := g.activity.Flush(ctx); err != nil {
			return nil, err
		}
	}
	return accounts.Prune(ctx, g.shared.store, g.now(), accounts.PruneOptions{
		IdleTTL: time.Duration(*g.GuestTTL), DryRun: dryRun, Batch: 100, MaxListed: 1000, Activity: g.activity,
		Observer: g.observe,
		Stager:   g.stager(),
	}, nil)
}

package caddymodule

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/accounts"
	"github.com/guestauth/caddy-guestauth/events"
	"github.com/guestauth/caddy-guestauth/storage"
)

// background runs this config's activity flusher and guest sweeper; both
// stop (the flusher after a last flush) when the config is cleaned up.
// Their context is the config's: Caddy cancels it when unloading the config.
type background struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func (g *GuestAuth) startBackground(ctx context.Context) {
	g.bg = &background{stop: make(chan struct{})}
	g.bg.wg.Add(1)
	go func() {
		defer g.bg.wg.Done()
		g.activity.Run(ctx, time.Duration(g.ActivityFlushInterval), g.bg.stop, func(err error) {
			g.logger.Error("recording user activity", zap.Error(err))
		})
	}()
	if *g.GuestTTL > 0 {
		g.bg.wg.Add(1)
		go func() {
			defer g.bg.wg.Done()
			t := time.NewTicker(time.Duration(g.SweepInterval))
			defer t.Stop()
			for {
				select {
				case <-g.bg.stop:
					return
				case <-t.C:
					if err := g.autoPrune(ctx); err != nil {
						g.logger.Error("expiring guests", zap.Error(err))
					}
				}
			}
		}()
	}
}

func (g *GuestAuth) stopBackground() {
	if g.bg != nil {
		close(g.bg.stop)
		g.bg.wg.Wait()
	}
}

// sweepLocker is implemented by stores that several processes share
// (PostgreSQL): the periodic guest sweep runs on one of them at a time.
type sweepLocker interface {
	TryLockSweep(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error)
}

// autoPrune is the periodic sweep: on a shared store, skipped while another
// instance runs it.
func (g *GuestAuth) autoPrune(ctx context.Context) error {
	if l, ok := g.shared.store.(sweepLocker); ok {
		_, err := l.TryLockSweep(ctx, "guests", func(ctx context.Context) error {
			_, err := g.prune(ctx, false)
			return err
		})
		return err
	}
	_, err := g.prune(ctx, false)
	return err
}

// prune runs one sweep. The store's lock keeps sweeps of several configs
// (during a reload, or sites sharing a file) from running at once.
func (g *GuestAuth) prune(ctx context.Context, dryRun bool) (*accounts.PruneReport, error) {
	g.shared.pruneMu.Lock()
	defer g.shared.pruneMu.Unlock()
	if err := g.activity.Flush(ctx); err != nil { // judge idleness on fresh data
		return nil, err
	}
	return accounts.Prune(ctx, g.shared.store, g.now(), accounts.PruneOptions{
		IdleTTL: time.Duration(*g.GuestTTL), DryRun: dryRun, Batch: 100, MaxListed: 1000,
	}, func(p accounts.Pruned) {
		g.emit(events.Event{Type: events.GuestExpired, UserID: p.UserID, Data: map[string]any{"reason": p.Reason, "name": p.Name}})
	})
}

// keepWriter removes the keep header from the upstream's response and, when
// it says "true" for a guest (or a passwordless normal user, who expires like
// one), marks the user kept (never expired).
type keepWriter struct {
	caddyhttp.ResponseWriterWrapper
	g      *GuestAuth
	ctx    context.Context
	user   *storage.User // nil: no identity on this request
	marked bool
}

func (k *keepWriter) WriteHeader(status int) {
	k.settle()
	k.ResponseWriterWrapper.WriteHeader(status)
}

// settle removes the keep header and acts on it; it runs before the status
// is written and again when the handler returns, in case it never was.
func (k *keepWriter) settle() {
	h := k.Header()
	v := h.Get(k.g.KeepHeader)
	if _, ok := h[k.g.KeepHeader]; ok {
		h.Del(k.g.KeepHeader)
	}
	if !k.marked && k.user != nil && k.user.Ephemeral() && !k.user.Kept && strings.EqualFold(strings.TrimSpace(v), "true") {
		k.marked = true
		_, err := k.g.shared.store.UpdateUser(k.ctx, k.user.ID, func(u *storage.User) error {
			u.Kept = true
			return nil
		})
		if err != nil {
			k.g.logger.Error("marking guest kept", zap.String("user_id", k.user.ID), zap.Error(err))
		} else {
			k.g.logger.Info("guest.kept", zap.String("user_id", k.user.ID))
		}
	}
}

func (k *keepWriter) Write(b []byte) (int, error) {
	k.ensureHeader()
	return k.ResponseWriterWrapper.Write(b)
}

func (k *keepWriter) ReadFrom(r io.Reader) (int64, error) {
	k.ensureHeader()
	return k.ResponseWriterWrapper.ReadFrom(r)
}

// ensureHeader runs WriteHeader's check when the body starts without one.
func (k *keepWriter) ensureHeader() {
	if _, ok := k.Header()[k.g.KeepHeader]; ok {
		k.WriteHeader(http.StatusOK)
	}
}

// next passes the request on, watching the response for the keep header.
func (g *GuestAuth) next(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, user *storage.User) error {
	// The mark is the upstream's decision: it is written even if the client
	// has gone by then.
	ctx := context.WithoutCancel(r.Context())
	kw := &keepWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, g: g, ctx: ctx, user: user}
	err := next.ServeHTTP(kw, r)
	kw.settle()
	return err
}

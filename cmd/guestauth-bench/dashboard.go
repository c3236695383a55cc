//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/guestauth/caddy-guestauth/internal/dashboard"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
	_ "github.com/guestauth/caddy-guestauth/storage/bolt"
	_ "github.com/guestauth/caddy-guestauth/storage/postgres"
)

// The -dashboard N mode: no Caddy. It builds a population of N users
// directly in a store (bbolt in the run's directory, and PostgreSQL when
// -dashboard-postgres names a database): one session each, a fifth of
// them members, their activity spread over the last 30 days so that about
// half are idle past half the 30-day guest TTL, and 90 days of daily
// counters; then it times dashboard.Build over 90 days with its charts
// drawn (what the admin page and the admin API do per request), -rounds×5
// times after one CompactCounters (which a running Caddy does every
// minute), and prints the median and the worst against the 50 ms target.
func runDashboard(c config, dir string) error {
	ctx := context.Background()
	type target struct{ name, kind, loc string }
	targets := []target{{"bolt", storage.KindBolt, filepath.Join(dir, "dashboard.db")}}
	if c.dashboardPostgres != "" {
		targets = append(targets, target{"postgres", "postgres", c.dashboardPostgres})
	}
	for _, tg := range targets {
		st, err := storage.Open(ctx, storage.Config{Kind: tg.kind, Location: tg.loc})
		if err != nil {
			return fmt.Errorf("%s: %w", tg.name, err)
		}
		now := time.Now().UTC()
		t0 := time.Now()
		if have, err := st.Counts(ctx); err == nil && have.Users >= int64(c.dashboard) {
			// A database filled by an earlier run (-dashboard-postgres): reused.
			logf("%s: reusing its %d users", tg.name, have.Users)
		} else if err := fillDashboard(ctx, st, c.dashboard, now); err != nil {
			st.Close()
			return fmt.Errorf("%s: filling: %w", tg.name, err)
		} else {
			logf("%s: %d users with a session each in %v", tg.name, c.dashboard, time.Since(t0).Round(time.Second))
		}
		// What the store's owner does every minute (caddymodule).
		if err := st.CompactCounters(ctx, now); err != nil {
			st.Close()
			return err
		}
		var times []time.Duration
		var rep *dashboard.Report
		for range max(c.rounds, 1) * 5 {
			t := time.Now()
			rep, err = dashboard.Build(ctx, st, now, 90, 30*24*time.Hour)
			if err != nil {
				st.Close()
				return err
			}
			for _, ch := range rep.Charts() {
				_ = ch.SVG()
				_ = ch.Rows()
			}
			times = append(times, time.Since(t))
		}
		st.Close()
		slices.Sort(times)
		med, worst := times[len(times)/2], times[len(times)-1]
		verdict := "meets"
		if worst > 50*time.Millisecond {
			verdict = "MISSES"
		}
		fmt.Printf("| %s | %d users | now: %d guests, %d members, %d sessions, %d idle | dashboard (90 days, charts) median %v, worst %v of %d | %s the 50 ms target |\n",
			tg.name, c.dashboard, rep.Now.Guests, rep.Now.Members, rep.Now.Sessions, rep.Now.IdleGuests,
			med.Round(10*time.Microsecond), worst.Round(10*time.Microsecond), len(times), verdict)
	}
	return nil
}

// fillDashboard writes n users (with a session each) and 90 days of daily
// counters, concurrently, through the store's own CreateUser.
func fillDashboard(ctx context.Context, st storage.Backend, n int, now time.Time) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				id := uuid.Must(uuid.NewV7()).String()
				created := now.Add(-time.Duration(i%(30*24*60)) * time.Minute)
				u := &model.User{ID: id, Name: model.GuestNamePrefix + id, Tag: model.TagGuest, CreatedAt: created, UpdatedAt: created}
				if i%5 == 0 {
					u.Tag, u.Name, u.PasswordHash = model.TagNormal, "member"+id[len(id)-12:], "$argon2id$bench"
				}
				s := &model.Session{ID: uuid.Must(uuid.NewV7()).String(), UserID: id, ClientID: "bench", AuthTime: created, CreatedAt: created,
					LastUsedAt: created, ExpiresAt: now.Add(24 * time.Hour), IdleExpiresAt: now.Add(24 * time.Hour), RefreshKey: []byte("k"), Generation: 1}
				if err := st.CreateUser(ctx, u, s, nil, nil); err != nil {
					errs <- err
					return
				}
				if i%100000 == 0 && i > 0 {
					fmt.Fprintf(os.Stderr, "  %d\n", i)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	var t storage.Tally
	for d := range 90 {
		day := now.AddDate(0, 0, -d)
		for _, s := range []string{storage.SeriesGuestsCreated, storage.SeriesCohortUpgraded, storage.SeriesMerged, storage.SeriesExpired, storage.SeriesDeleted,
			storage.SeriesUpgraded + "password", storage.SeriesUpgraded + "passkey", storage.SeriesUpgraded + "email", storage.SeriesLimitHit + "ip", storage.SeriesLimitHit + "signin"} {
			t.Add(day, s, int64(100+d))
		}
		for b := 10; b < 30; b++ {
			t.Add(day, fmt.Sprintf("%s%d", storage.SeriesTimeToUpgrade, b), int64(b))
		}
	}
	return st.AddDaily(ctx, t.Counts())
}

//go:build linux

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// The -prefill-offline comparison: two more EdDSA guest_auth sites, each
// on a bbolt store of its own — "large" prefilled with -prefill-offline
// guests, "fresh" with -fresh-size — both built before Caddy starts,
// soaked together (-soak), then measured creating guests in interleaved
// rounds, so the ratio of the two is taken on the same machine at the
// same time.
var storeSites = []string{"large", "fresh"}

// prefillStores builds both stores and adds their sites to cf.
func (b *bench) prefillStores(cf *strings.Builder, upstream string) error {
	b.stores, b.creds = map[string]string{}, map[string][]cred{}
	for _, name := range storeSites {
		n := b.cfg.freshSize
		if name == "large" {
			n = b.cfg.prefillOffline
		}
		port, err := freePort()
		if err != nil {
			return err
		}
		base := fmt.Sprintf("http://127.0.0.1:%d", port)
		site := prefillSite{path: filepath.Join(b.dir, name+".db"), issuer: "http://" + name + ".bench.invalid", alg: jwa.EdDSA, client: "bench-app"}
		logf("prefilling %s with %d guests, offline", site.path, n)
		t0 := time.Now()
		creds, err := prefillStore(context.Background(), site, n, b.cfg.soakKeep, func(done int) {
			logf("  %d guests (%.0f/s)", done, float64(done)/time.Since(t0).Seconds())
		})
		if err != nil {
			return err
		}
		logf("  %s: %d guests in %v", name, n, time.Since(t0).Round(time.Second))
		b.stores[name], b.creds[name] = base, creds
		writeGuestSite(cf, base, "bolt "+site.path, site.issuer, "EdDSA", b.cfg.cacheSize, upstream)
	}
	return nil
}

// largeStoreSides checks that both sites accept their prefilled tokens,
// soaks them when asked, and returns their guest-creation sides.
func (b *bench) largeStoreSides(res *results) ([]side, error) {
	for _, name := range storeSites {
		if err := b.proxied(context.Background(), b.stores[name], b.creds[name][0].access); err != nil {
			return nil, fmt.Errorf("%s store site, prefilled token: %w", name, err)
		}
	}
	res.notes = append(res.notes, fmt.Sprintf("stores prefilled offline: large %d guests, fresh %d", b.cfg.prefillOffline, b.cfg.freshSize))
	if b.cfg.soak > 0 {
		var sites []*soakSite
		for _, name := range storeSites {
			sites = append(sites, newSoakSite(name, b.stores[name], b.creds[name]))
		}
		note, err := b.soak(sites, b.cfg.soakMix, b.cfg.soak)
		if err != nil {
			return nil, err
		}
		res.notes = append(res.notes, note)
	}
	var sides []side
	for _, name := range storeSites {
		base := b.stores[name]
		sides = append(sides, side{name: "create-" + name, n: b.cfg.nCreate, run: func(ctx context.Context, _ int) error {
			return b.call(createReq(ctx, base), nil)
		}})
	}
	return sides, nil
}

// ratio is the median over rounds of a's CPU per operation over b's: the
// sides of one round ran next to each other on the same machine.
func (r *results) ratio(a, b string) float64 {
	var xs []float64
	for i := range min(len(r.samples[a]), len(r.samples[b])) {
		if d := r.samples[b][i].perOp(); d > 0 {
			xs = append(xs, float64(r.samples[a][i].perOp())/float64(d))
		}
	}
	return median(xs)
}

// largeStoreRows: each store's CPU per guest, and their ratio against the
// issue's target (within 1.2× of the fresh store).
func (r *results) largeStoreRows() []row {
	var rows []row
	for _, name := range storeSites {
		s := "create-" + name
		rows = append(rows, row{what: fmt.Sprintf("guest creation, EdDSA, %s store, CPU per guest", name), measured: r.perOp(s), target: 300,
			extra: fmt.Sprintf("%.0f guests/s; %.0f%% in the kernel", r.rate(s), 100*r.sysShare(s))})
	}
	q := r.ratio("create-large", "create-fresh")
	rows = append(rows, row{what: "guest creation CPU, large store ÷ fresh store", measured: q, target: 1.2, isRatio: true,
		extra: "per round: " + r.ratios("create-large", "create-fresh")})
	return rows
}

// ratios lists the per-round ratios.
func (r *results) ratios(a, b string) string {
	var parts []string
	for i := range min(len(r.samples[a]), len(r.samples[b])) {
		if d := r.samples[b][i].perOp(); d > 0 {
			parts = append(parts, fmt.Sprintf("%.2f", float64(r.samples[a][i].perOp())/float64(d)))
		}
	}
	return strings.Join(parts, " ")
}

// storeNotes describes each store as Caddy left it: its records, its
// file and the part of it in use.
func (b *bench) storeNotes() []string {
	var notes []string
	ctx := context.Background()
	for _, name := range storeSites {
		st, err := bolt.Open(filepath.Join(b.dir, name+".db"), bolt.Options{})
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s store: %v", name, err))
			continue
		}
		s, err := st.Stats(ctx)
		st.Close()
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s store: %v", name, err))
			continue
		}
		notes = append(notes, fmt.Sprintf("%s store after the run: %d users (%d guests), %d sessions; file %.1f MB, %.1f MB in use (%.2f KB per user)",
			name, s.Users, s.LiveGuests, s.Sessions, float64(s.FileSize)/1e6, float64(s.DataSize)/1e6, float64(s.DataSize)/1e3/float64(max(s.Users, 1))))
	}
	return notes
}

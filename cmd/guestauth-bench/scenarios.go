//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// results holds every round's samples by side name, and the floors.
type results struct {
	samples map[string][]sample
	floors  []floors
	groups  map[string]bool
	notes   []string
}

func (b *bench) want(group string) bool {
	if b.cfg.only == "" {
		return true
	}
	return slices.Contains(strings.Split(b.cfg.only, ","), group)
}

func (b *bench) measure() (*results, error) {
	res := &results{samples: map[string][]sample{}, groups: map[string]bool{}}
	keys, err := newFloorKeys()
	if err != nil {
		return nil, err
	}
	var sides []side

	// Every guest_auth site must really authenticate.
	probe := map[string]string{}
	for _, alg := range algs {
		toks, err := b.createGuests(alg, 1)
		if err != nil {
			return nil, err
		}
		if err := b.proxied(context.Background(), b.guest[alg], toks[0]); err != nil {
			return nil, fmt.Errorf("%s site: %w", alg, err)
		}
		probe[alg] = toks[0]
	}
	if err := b.proxied(context.Background(), b.plain4, probe["ES256"]); err != nil {
		return nil, fmt.Errorf("plain site with headers: %w", err)
	}

	if b.cfg.prefill > 0 {
		logf("prefilling %d guests", b.cfg.prefill)
		t0 := time.Now()
		for done := 0; done < b.cfg.prefill; {
			n := min(20000, b.cfg.prefill-done)
			if _, err := b.createGuests("EdDSA", n); err != nil {
				return nil, err
			}
			done += n
			logf("  %d guests (%.0f/s)", done, float64(done)/time.Since(t0).Seconds())
		}
		res.notes = append(res.notes, fmt.Sprintf("store prefilled with %d guests", b.cfg.prefill))
	}

	var storeSides []side
	if b.stores != nil {
		if storeSides, err = b.largeStoreSides(res); err != nil {
			return nil, err
		}
	}

	if b.want("create") && storeSides != nil {
		res.groups["create"] = true
		sides = append(sides, storeSides...)
	} else if b.want("create") {
		res.groups["create"] = true
		for _, alg := range algs {
			base := b.guest[alg]
			sides = append(sides, side{name: "create-" + alg, n: b.cfg.nCreate, run: func(ctx context.Context, _ int) error {
				return b.call(createReq(ctx, base), nil)
			}})
		}
	}
	if b.want("hit") {
		res.groups["hit"] = true
		tok, base := probe["ES256"], b.guest["ES256"]
		sides = append(sides,
			side{name: "hit-plain", n: b.cfg.nProxy, run: func(ctx context.Context, _ int) error { return b.plainGet(ctx, b.plain, tok) }},
			side{name: "hit-plain4", n: b.cfg.nProxy, run: func(ctx context.Context, _ int) error { return b.plainGet(ctx, b.plain4, tok) }},
			side{name: "hit-plain1", n: b.cfg.nProxy, run: func(ctx context.Context, _ int) error { return b.plainGet(ctx, b.plain1, tok) }},
			side{name: "hit-guest", n: b.cfg.nProxy, run: func(ctx context.Context, _ int) error { return b.proxied(ctx, base, tok) }},
		)
	}
	if b.want("miss") {
		res.groups["miss"] = true
		for _, alg := range []string{"RS256", "ES256"} {
			logf("creating %d %s guests for the cache-miss scenario", b.cfg.missTokens, alg)
			toks, err := b.createGuests(alg, b.cfg.missTokens)
			if err != nil {
				return nil, err
			}
			if b.missToks == nil {
				b.missToks = map[string][]string{}
			}
			b.missToks[alg] = toks
			base := b.guest[alg]
			var plainNext, guestNext atomic.Int64
			sides = append(sides,
				side{name: "miss-plain-" + alg, n: b.cfg.nMiss, run: func(ctx context.Context, _ int) error {
					return b.plainGet(ctx, b.plain, toks[int(plainNext.Add(1))%len(toks)])
				}},
				side{name: "miss-guest-" + alg, n: b.cfg.nMiss, run: func(ctx context.Context, _ int) error {
					return b.proxied(ctx, base, toks[int(guestNext.Add(1))%len(toks)])
				}},
			)
		}
	}
	if b.want("password") {
		res.groups["password"] = true
		base := b.guest["ES256"]
		n := b.cfg.nPassword
		// Users to sign in, made once.
		signed, err := b.createGuests("ES256", n)
		if err != nil {
			return nil, err
		}
		names := make([]string, n)
		if _, err := b.drive(n, func(ctx context.Context, i int) error {
			names[i] = fmt.Sprintf("benchuser%d", i)
			return b.call(upgradeReq(ctx, base, signed[i], names[i]), nil)
		}); err != nil {
			return nil, err
		}
		var fresh []string
		var batch atomic.Int64
		sides = append(sides,
			side{name: "upgrade", n: n,
				prep: func(int) error {
					batch.Add(1)
					var err error
					fresh, err = b.createGuests("ES256", n)
					return err
				},
				run: func(ctx context.Context, i int) error {
					return b.call(upgradeReq(ctx, base, fresh[i], fmt.Sprintf("bench%d_%d", batch.Load(), i)), nil)
				}},
			side{name: "signin", n: n, run: func(ctx context.Context, i int) error {
				return b.call(signInReq(ctx, base, names[i]), nil)
			}},
		)
	}

	if b.want("authorize") {
		res.groups["authorize"] = true
		sides = append(sides, b.authorizeSides()...)
	}

	// Warm up every side once (connections, caches, Caddy's heap).
	for _, s := range sides {
		w := s
		w.n = min(s.n, 200)
		if w.prep != nil {
			if err := w.prep(0); err != nil {
				return nil, err
			}
		}
		if _, err := b.drive(w.n, w.run); err != nil {
			return nil, fmt.Errorf("warm-up %s: %w", s.name, err)
		}
	}

	for r := range b.cfg.rounds {
		logf("round %d/%d", r+1, b.cfg.rounds)
		res.floors = append(res.floors, keys.measure(res.groups["password"]))
		for j := range sides {
			s := sides[(j+r)%len(sides)]
			smp, err := b.measureSide(s, r)
			if err != nil {
				return nil, err
			}
			res.samples[s.name] = append(res.samples[s.name], smp)
			logf("  %-18s %9.1f µs CPU/op %8.0f /s  foreign %.2f cores", s.name, float64(smp.perOp())/1e3, smp.rate(), smp.foreign)
		}
	}
	res.notes = append(res.notes, "Caddy RSS at the end: "+rssNote(b.pid))
	if files, _ := filepath.Glob(filepath.Join(b.dir, "*.db")); len(files) > 0 {
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				res.notes = append(res.notes, fmt.Sprintf("store file %s: %.1f MB", filepath.Base(f), float64(fi.Size())/1e6))
			}
		}
	}
	return res, nil
}

var errEnough = errors.New("enough")

// profile saves Caddy CPU profiles of guest creation with each algorithm
// and of proxied requests with a cached token (and of password upgrades),
// and the allocations made
// meanwhile (as a before/after pair for `go tool pprof -diff_base`).
func (b *bench) profile() error {
	if err := os.MkdirAll(b.cfg.profileDir, 0o755); err != nil {
		return err
	}
	get := func(path, file string) error {
		resp, err := http.Get("http://" + b.admin + path)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		f, err := os.Create(filepath.Join(b.cfg.profileDir, file))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, resp.Body)
		return err
	}
	toks, err := b.createGuests("ES256", 1)
	if err != nil {
		return err
	}
	type load struct {
		name string
		op   func(ctx context.Context) error
	}
	var loads []load
	for _, name := range storeSites {
		if base := b.stores[name]; base != "" {
			loads = append(loads, load{"create-" + name, func(ctx context.Context) error { return b.call(createReq(ctx, base), nil) }})
		}
	}
	for _, alg := range algs {
		base := b.guest[alg]
		loads = append(loads, load{"create-" + alg, func(ctx context.Context) error { return b.call(createReq(ctx, base), nil) }})
	}
	loads = append(loads, load{"hit", func(ctx context.Context) error { return b.proxied(ctx, b.guest["ES256"], toks[0]) }})
	for _, alg := range []string{"RS256", "ES256"} {
		if mt := b.missToks[alg]; len(mt) > 0 {
			var next atomic.Int64
			loads = append(loads, load{"miss-" + alg, func(ctx context.Context) error {
				return b.proxied(ctx, b.guest[alg], mt[int(next.Add(1))%len(mt)])
			}})
		}
	}
	if b.want("authorize") {
		// The code flow and refreshes, each with a session made beforehand.
		for _, alg := range authzAlgs {
			base := b.authz[alg]
			const n = 3000
			cookies, refresh, err := b.authorizeFixtures(base, n)
			if err != nil {
				return err
			}
			var nextCode, nextRefresh atomic.Int64
			client := b.noRedirect()
			loads = append(loads,
				load{"authcode-" + alg, func(ctx context.Context) error {
					i := int(nextCode.Add(1)) - 1
					if i >= n {
						return errEnough
					}
					return b.codeFlow(ctx, client, base, cookies[i])
				}},
				load{"refresh-" + alg, func(ctx context.Context) error {
					i := int(nextRefresh.Add(1)) - 1
					if i >= n {
						return errEnough
					}
					return b.call(refreshReq(ctx, base, refresh[i]), nil)
				}})
		}
	}
	if b.want("password") {
		// Upgrades with a password, each of a guest made beforehand (the
		// profile then holds the upgrades only, not the creations).
		fresh, err := b.createGuests("ES256", 400)
		if err != nil {
			return err
		}
		var next atomic.Int64
		loads = append(loads, load{"upgrade", func(ctx context.Context) error {
			i := int(next.Add(1)) - 1
			if i >= len(fresh) {
				return errEnough
			}
			return b.call(upgradeReq(ctx, b.guest["ES256"], fresh[i], fmt.Sprintf("profiled%d", i)), nil)
		}})
	}
	for _, l := range loads {
		if err := get("/debug/pprof/allocs", "allocs-before-"+l.name+".pprof"); err != nil {
			return err
		}
		var done atomic.Bool
		errc := make(chan error, 1)
		go func() {
			errc <- get("/debug/pprof/profile?seconds=8", "cpu-"+l.name+".pprof")
			done.Store(true)
		}()
		var count atomic.Int64
		_, err := b.drive(1<<30, func(ctx context.Context, _ int) error {
			if done.Load() {
				return errEnough
			}
			count.Add(1)
			return l.op(ctx)
		})
		if err != nil && !errors.Is(err, errEnough) {
			return err
		}
		if err := <-errc; err != nil {
			return err
		}
		if err := get("/debug/pprof/allocs", "allocs-after-"+l.name+".pprof"); err != nil {
			return err
		}
		logf("profiled %d requests (%s) into %s", count.Load(), l.name, b.cfg.profileDir)
	}
	return nil
}

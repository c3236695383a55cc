//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// opKind is one kind of request of the soak's mixed traffic.
type opKind int

const (
	opProxy   opKind = iota // a proxied request with an existing guest's access token
	opCreate                // a new guest
	opRefresh               // a refresh-token grant
	opUpgrade               // a rename of a guest (no password, so no argon2)
	opLogout                // POST /api/logout: the session ends
	nOps
)

var opNames = [nOps]string{"proxy", "create", "refresh", "upgrade", "logout"}

// mix is the soak's requests per second of each kind, per site.
type mix [nOps]int

// defaultMix: a busy site's second. 400 proxied requests a second over
// 20,000 clients touch about 20,000 users a minute, the activity a
// once-a-minute flush writes in the profile; guests are created,
// refreshed, renamed and logged out at the same time.
const defaultMix = "proxy=400,create=20,refresh=10,upgrade=1,logout=1"

// parseMix reads "kind=n,…"; kinds left out are 0.
func parseMix(s string) (mix, error) {
	var m mix
	total := 0
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n < 0 {
			return m, fmt.Errorf("soak mix %q: want kind=n,… with n ≥ 0", s)
		}
		found := false
		for i, name := range opNames {
			if name == k {
				m[i], found = n, true
			}
		}
		if !found {
			return m, fmt.Errorf("soak mix %q: unknown kind %q (one of %s)", s, k, strings.Join(opNames[:], ", "))
		}
		total += n
	}
	if total == 0 {
		return m, fmt.Errorf("soak mix %q: no requests", s)
	}
	return m, nil
}

func (m mix) total() int {
	t := 0
	for _, n := range m {
		t += n
	}
	return t
}

func (m mix) String() string {
	var parts []string
	for i, n := range m {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", opNames[i], n))
		}
	}
	return strings.Join(parts, ",") + " per second per site"
}

// schedule is one second of m as a sequence of m.total() requests, each
// kind spread evenly through it (smooth weighted round robin): 400
// proxied requests and 20 creations give a creation every 21 requests,
// not twenty in a row.
func (m mix) schedule() []opKind {
	var cur [nOps]int
	total := m.total()
	out := make([]opKind, 0, total)
	for range total {
		var best opKind
		found := false
		for k := range nOps {
			if m[k] == 0 {
				continue
			}
			cur[k] += m[k]
			if !found || cur[k] > cur[best] {
				best, found = k, true
			}
		}
		cur[best] -= total
		out = append(out, best)
	}
	return out
}

// slot is one client of the soak: a guest's current tokens.
type slot struct {
	mu     sync.Mutex
	cred   cred
	ended  bool // logged out; a creation reuses the slot
	upName int  // renames so far
}

// soakSite drives one site's share of the soak.
type soakSite struct {
	name, base string
	slots      []*slot
	cursor     [nOps]atomic.Int64
	done, fail [nOps]atomic.Int64
	firstErr   atomic.Pointer[error]
}

func newSoakSite(name, base string, creds []cred) *soakSite {
	s := &soakSite{name: name, base: base}
	for _, c := range creds {
		s.slots = append(s.slots, &slot{cred: c})
	}
	// The kinds start at different places, so they rarely wait for one
	// another's slot.
	for k := range nOps {
		s.cursor[k].Store(int64(k) * int64(len(creds)) / int64(nOps))
	}
	return s
}

// pick locks the next slot for k (round robin), a live one unless live is
// false; nil when there is none.
func (s *soakSite) pick(k opKind, live bool) *slot {
	for range len(s.slots) {
		sl := s.slots[int(s.cursor[k].Add(1))%len(s.slots)]
		sl.mu.Lock()
		if !live || !sl.ended {
			return sl
		}
		sl.mu.Unlock()
	}
	return nil
}

type soakTokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// do runs one request of kind k.
func (s *soakSite) do(ctx context.Context, b *bench, k opKind) error {
	if k == opCreate {
		var ts soakTokens
		if err := b.call(createReq(ctx, s.base), &ts); err != nil {
			return err
		}
		// The new guest takes the place of an older client (a logged-out
		// one when the round robin meets one).
		sl := s.pick(k, false)
		defer sl.mu.Unlock()
		sl.cred, sl.ended = cred{access: ts.AccessToken, refresh: ts.RefreshToken}, false
		return nil
	}
	sl := s.pick(k, true)
	if sl == nil {
		return errors.New("every client has logged out")
	}
	defer sl.mu.Unlock()
	switch k {
	case opProxy:
		return b.proxied(ctx, s.base, sl.cred.access)
	case opRefresh:
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {sl.cred.refresh}, "client_id": {"bench-app"}, "client_secret": {"bench-secret"}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		var ts soakTokens
		if err := b.call(req, &ts); err != nil {
			return err
		}
		sl.cred = cred{access: ts.AccessToken, refresh: ts.RefreshToken}
		return nil
	case opUpgrade:
		sl.upName++
		body, _ := json.Marshal(map[string]string{"name": fmt.Sprintf("soak-%s-%d-%d", s.name, s.cursor[opUpgrade].Load(), sl.upName)})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/update-user", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+sl.cred.access)
		return b.call(req, nil)
	case opLogout:
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/api/logout", nil)
		req.Header.Set("Authorization", "Bearer "+sl.cred.access)
		if err := b.call(req, nil); err != nil {
			return err
		}
		sl.ended = true
		return nil
	}
	return fmt.Errorf("unknown request kind %d", k)
}

// run sends m's schedule to the site at its steady rate for d, from conc
// workers. A request the workers cannot start on time waits: the rate is a
// ceiling, and the shortfall shows in the counts. Requests under way when
// d ends are finished, not cancelled (a cancelled request is an error in
// Caddy's log).
func (s *soakSite) run(ctx context.Context, b *bench, m mix, d time.Duration, conc int) {
	reqCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	jobs := make(chan opKind)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range jobs {
				if err := s.do(reqCtx, b, k); err != nil {
					if s.fail[k].Add(1) == 1 {
						s.firstErr.CompareAndSwap(nil, &err)
					}
					continue
				}
				s.done[k].Add(1)
			}
		}()
	}
	sched := m.schedule()
	interval := time.Second / time.Duration(len(sched))
	start := time.Now()
dispatch:
	for i := 0; ; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-ctx.Done():
				break dispatch
			case <-time.After(wait):
			}
		}
		select {
		case <-ctx.Done():
			break dispatch
		case jobs <- sched[i%len(sched)]:
		}
	}
	close(jobs)
	wg.Wait()
}

// counts is "kind done (failed)" for every kind.
func (s *soakSite) counts() string {
	var parts []string
	for k := range nOps {
		p := fmt.Sprintf("%s %d", opNames[k], s.done[k].Load())
		if f := s.fail[k].Load(); f > 0 {
			p += fmt.Sprintf(" (%d failed)", f)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// failures is the share of failed requests, and the first failure.
func (s *soakSite) failures() (float64, error) {
	var done, failed int64
	for k := range nOps {
		done += s.done[k].Load()
		failed += s.fail[k].Load()
	}
	var first error
	if p := s.firstErr.Load(); p != nil {
		first = *p
	}
	if done+failed == 0 {
		return 0, first
	}
	return float64(failed) / float64(done+failed), first
}

// soak runs the mixed traffic on every site at once for d, logging each
// minute what was done and what Caddy used, and fails when more than 1 %
// of a site's requests failed.
func (b *bench) soak(sites []*soakSite, m mix, d time.Duration) (string, error) {
	logf("soaking for %v: %s, on %d sites", d, m, len(sites))
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, s := range sites {
		wg.Add(1)
		go func() { defer wg.Done(); s.run(ctx, b, m, d, b.cfg.conc) }()
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		c0, _ := processCPU(b.pid)
		t0 := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				c1, _ := processCPU(b.pid)
				c := float64(c1-c0) / float64(time.Since(t0))
				c0, t0 = c1, time.Now()
				for _, s := range sites {
					logf("  soak %s: %s", s.name, s.counts())
				}
				logf("  Caddy used %.2f cores over the minute; RSS %s", c, rssNote(b.pid))
			}
		}
	}()
	c0, _ := processCPU(b.pid)
	t0 := time.Now()
	wg.Wait()
	close(stop)
	c1, _ := processCPU(b.pid)
	used := float64(c1-c0) / float64(time.Since(t0))
	var sb strings.Builder
	fmt.Fprintf(&sb, "soak: %v of %s (Caddy used %.2f cores on average)", d.Round(time.Second), m, used)
	var errs []error
	for _, s := range sites {
		fmt.Fprintf(&sb, "; %s: %s", s.name, s.counts())
		if share, first := s.failures(); share > 0.01 {
			errs = append(errs, fmt.Errorf("soak of %s: %.1f%% of requests failed, first: %w", s.name, 100*share, first))
		} else if first != nil {
			logf("  soak %s: first failure: %v", s.name, first)
		}
	}
	return sb.String(), errors.Join(errs...)
}

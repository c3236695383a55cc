//go:build linux

// Command guestauth-bench measures what guest_auth costs, next to the floor
// of what it cannot avoid, on this machine and over loopback only:
//
//	go run ./cmd/guestauth-bench -svg bench.svg
//
// It builds this module's Caddy (or runs -caddy), starts it with a plain
// reverse_proxy site, a plain site that adds four identity-sized headers,
// one that adds the same values in a single header, and one guest_auth site per signing algorithm, all in front of one
// upstream served by this process, and then runs every scenario in
// interleaved rounds (the order rotates from round to round), reading the
// Caddy process's CPU for each side of each round. A round during which
// other processes used more than -max-foreign cores is run again (at most
// -retries times; the least disturbed attempt is kept and counted). It
// prints a Markdown table of medians, floors, ratios and targets, and, with
// -svg, draws the same figures.
//
// Floors are measured in this process on one thread, in every round: two
// signatures per guest (access and ID token), one verification per cache
// miss, one argon2id hash per password check.
//
// -storage is the guest_auth `storage` line, so the same run works against
// any backend (`-storage 'postgres postgres://…'`); "{dir}" in it stands for
// the run's temporary directory. The tool stops by itself: every phase is
// bounded by a count and by -phase-timeout.
//
// -prefill-offline N measures guest creation on a large store: before
// Caddy starts, it writes N guests into one bbolt file and -fresh-size
// into another (through the accounts Service, so exactly what guest
// creation writes, with the file's own signing key), adds an EdDSA
// guest_auth site on each, runs -soak of mixed traffic on both at once
// (-soak-mix, per second per site: proxied requests with -soak-clients
// guests' tokens spread through the store, creations, refreshes, renames
// without a password, logouts), then measures creation on both in
// interleaved rounds and reports the ratio against the 1.2 target:
//
//	go run ./cmd/guestauth-bench -prefill-offline 1000000 -soak 10m -only create
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var algs = []string{"RS256", "ES256", "EdDSA"}

type config struct {
	caddyBin     string
	storageLine  string
	rounds       int
	retries      int
	maxForeign   float64
	conc         int
	nCreate      int
	nProxy       int
	nMiss        int
	nPassword    int
	missTokens   int
	cacheSize    int
	prefill      int
	svg          string
	profileDir   string
	phaseTimeout time.Duration
	keep         bool
	only         string
	// -dashboard: users in the store the dashboard is timed on.
	dashboard         int
	dashboardPostgres string
	// the large-store comparison (see largeStore)
	prefillOffline int
	freshSize      int
	soakKeep       int
	soak           time.Duration
	soakMix        mix
}

func main() {
	var c config
	flag.StringVar(&c.caddyBin, "caddy", "", "Caddy binary with guest_auth (default: go build ./cmd/caddy)")
	flag.StringVar(&c.storageLine, "storage", "bolt {dir}/guestauth.db", "the guest_auth storage line; {dir} is the run's temporary directory")
	flag.IntVar(&c.rounds, "rounds", 5, "interleaved rounds; medians are over rounds")
	flag.IntVar(&c.retries, "retries", 2, "re-runs of a round disturbed by foreign load")
	flag.Float64Var(&c.maxForeign, "max-foreign", 0.3, "cores other processes may use during a round before it is re-run")
	flag.IntVar(&c.conc, "c", 8, "concurrent connections of the load generator")
	flag.IntVar(&c.nCreate, "n-create", 400, "guests created per algorithm per round")
	flag.IntVar(&c.nProxy, "n-proxy", 6000, "proxied requests per side per round (cache hit)")
	flag.IntVar(&c.nMiss, "n-miss", 3000, "proxied requests per side per round (cache miss)")
	flag.IntVar(&c.nPassword, "n-password", 16, "upgrades and password sign-ins per round")
	flag.IntVar(&c.missTokens, "miss-tokens", 20000, "tokens per algorithm sent round robin for the cache-miss scenario (must exceed -cache-size)")
	flag.IntVar(&c.cacheSize, "cache-size", 10000, "token_cache_size of the guest_auth sites, below -miss-tokens so the cache-miss scenario misses")
	flag.IntVar(&c.prefill, "prefill", 0, "guests to create (EdDSA site) before measuring, to measure on a large store")
	flag.StringVar(&c.svg, "svg", "", "write a chart of the results to this file")
	flag.StringVar(&c.profileDir, "profile", "", "after the rounds, save Caddy CPU and allocation profiles of guest creation here")
	flag.DurationVar(&c.phaseTimeout, "phase-timeout", 3*time.Minute, "bound on any one phase")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (Caddyfile, logs, store)")
	flag.StringVar(&c.only, "only", "", "comma-separated scenario groups to run: create,hit,miss,password,authorize (default all)")
	flag.IntVar(&c.prefillOffline, "prefill-offline", 0, "compare guest creation on a store of this many guests, built before Caddy starts, with a -fresh-size store (two more EdDSA sites)")
	flag.IntVar(&c.freshSize, "fresh-size", 10000, "guests in the small store of the -prefill-offline comparison")
	flag.IntVar(&c.soakKeep, "soak-clients", 20000, "guests of each store whose tokens the soak uses (spread through the store)")
	flag.DurationVar(&c.soak, "soak", 0, "mixed traffic on both stores of -prefill-offline before the rounds")
	mixFlag := flag.String("soak-mix", defaultMix, "the soak's requests per second per site: proxy, create, refresh, upgrade (a rename, no password), logout")
	flag.IntVar(&c.dashboard, "dashboard", 0, "instead of the HTTP scenarios: time the admin dashboard on a store of this many users (bbolt, and -dashboard-postgres), no Caddy")
	flag.StringVar(&c.dashboardPostgres, "dashboard-postgres", "", "a PostgreSQL connection string for -dashboard (an empty database)")
	flag.Parse()
	var err error
	if c.dashboard > 0 {
		dir, err := os.MkdirTemp("", "guestauth-dashboard-*")
		if err == nil {
			err = runDashboard(c, dir)
			os.RemoveAll(dir)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "guestauth-bench:", err)
			os.Exit(1)
		}
		return
	}
	if c.soakMix, err = parseMix(*mixFlag); err != nil {
		fmt.Fprintln(os.Stderr, "guestauth-bench:", err)
		os.Exit(2)
	}
	if c.soak > 0 && c.prefillOffline <= 0 {
		fmt.Fprintln(os.Stderr, "guestauth-bench: -soak needs -prefill-offline")
		os.Exit(2)
	}
	if c.cacheSize < 1 || c.missTokens <= c.cacheSize {
		fmt.Fprintln(os.Stderr, "guestauth-bench: -miss-tokens must exceed -cache-size (>= 1), or the cache-miss scenario hits the cache")
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "guestauth-bench:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// The identity values the plain-with-headers sites add: the same lengths as
// a guest's (a UUID, guest_<UUID>, guest-user, true).
const (
	fakeID   = "00000000-0000-7000-8000-000000000000"
	fakeName = "guest_" + fakeID
)

type bench struct {
	cfg      config
	dir      string
	caddy    *exec.Cmd
	pid      int
	admin    string
	client   *http.Client
	plain    string // base URLs
	plain4   string
	plain1   string            // the same identity in one header
	guest    map[string]string // alg -> base URL
	authz    map[string]string // alg -> base URL of a site with the pages (authorize.go)
	upstream *http.Server
	seen     atomic.Int64        // upstream requests carrying X-Auth-User-Id
	missToks map[string][]string // alg -> the cache-miss scenario's tokens
	// the -prefill-offline comparison: site name ("large", "fresh") -> base
	// URL, and the prefilled guests' tokens the soak uses
	stores map[string]string
	creds  map[string][]cred
}

func run(c config) error {
	dir, err := os.MkdirTemp("", "guestauth-bench-")
	if err != nil {
		return err
	}
	if c.keep {
		logf("keeping %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b := &bench{cfg: c, dir: dir, guest: map[string]string{}, authz: map[string]string{}}
	b.client = &http.Client{
		Timeout:   c.phaseTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: c.conc * 2, DisableCompression: true},
	}
	if c.caddyBin == "" {
		c.caddyBin = filepath.Join(dir, "caddy")
		logf("building ./cmd/caddy")
		cmd := exec.Command("go", "build", "-o", c.caddyBin, "./cmd/caddy") //nolint:gosec // G204: the output path is ours
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building caddy (run from the module's root, or pass -caddy): %w", err)
		}
		b.cfg.caddyBin = c.caddyBin
	}
	if err := b.start(); err != nil {
		return err
	}
	defer b.stop()

	res, err := b.measure()
	if err != nil {
		return err
	}
	if c.profileDir != "" {
		if err := b.profile(); err != nil {
			return err
		}
	}
	if b.stores != nil {
		// Read the stores once Caddy has let go of them.
		b.stop()
		res.notes = append(res.notes, b.storeNotes()...)
	}
	fmt.Print(res.table(b.cfg))
	if c.svg != "" {
		//nolint:gosec // G306: a chart meant to be read
		if err := os.WriteFile(c.svg, []byte(res.svg()), 0o644); err != nil {
			return err
		}
		logf("chart written to %s", c.svg)
	}
	return nil
}

func (b *bench) start() error {
	// The upstream: a tiny handler in this process, whose CPU is not
	// counted (only Caddy's is).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	b.upstream = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get("X-Auth-User-Id"); id != "" {
			b.seen.Add(1)
			w.Header().Set("X-Seen-User-Id", id)
		}
		_, _ = io.WriteString(w, "ok\n")
	})}
	go func() { _ = b.upstream.Serve(ln) }() // ends when stop closes it
	up := ln.Addr().String()

	ports := make([]int, 3+len(algs)+1+len(authzAlgs))
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	b.admin = fmt.Sprintf("127.0.0.1:%d", ports[0])
	b.plain = fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	b.plain4 = fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	b.plain1 = fmt.Sprintf("http://127.0.0.1:%d", ports[3+len(algs)])
	storageLine := strings.ReplaceAll(b.cfg.storageLine, "{dir}", b.dir)
	var cf strings.Builder
	fmt.Fprintf(&cf, `{
	admin %s
	persist_config off
	storage file_system %s
}
%s {
	reverse_proxy %s
}
%s {
	reverse_proxy %s {
		header_up X-Auth-User-Id %s
		header_up X-Auth-User-Name %s
		header_up X-Auth-User-Tag guest-user
		header_up X-Auth-User-Anonymous true
	}
}
%s {
	reverse_proxy %s {
		header_up X-Auth-User "id=%s; name=%s; tag=guest-user; anonymous=true"
	}
}
`, b.admin, filepath.Join(b.dir, "caddy-data"), b.plain, up, b.plain4, up, fakeID, fakeName, b.plain1, up, fakeID, fakeName)
	for i, alg := range algs {
		b.guest[alg] = fmt.Sprintf("http://127.0.0.1:%d", ports[3+i])
		writeGuestSite(&cf, b.guest[alg], storageLine, "http://"+strings.ToLower(alg)+".bench.invalid", alg, b.cfg.cacheSize, up)
	}
	for i, alg := range authzAlgs {
		b.authz[alg] = fmt.Sprintf("http://127.0.0.1:%d", ports[4+len(algs)+i])
		writeAuthzSite(&cf, b.authz[alg], storageLine, "http://authz-"+strings.ToLower(alg)+".bench.invalid", alg, b.cfg.cacheSize, up)
	}
	if b.cfg.prefillOffline > 0 {
		if err := b.prefillStores(&cf, up); err != nil {
			return err
		}
	}
	cfPath := filepath.Join(b.dir, "Caddyfile")
	if err := os.WriteFile(cfPath, []byte(cf.String()), 0o600); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(b.dir, "caddy.log"))
	if err != nil {
		return err
	}
	b.caddy = exec.Command(b.cfg.caddyBin, "run", "--config", cfPath, "--adapter", "caddyfile") //nolint:gosec // G204: the binary the tool built or was given
	b.caddy.Stdout, b.caddy.Stderr = logFile, logFile
	b.caddy.Env = append(os.Environ(), "XDG_DATA_HOME="+filepath.Join(b.dir, "xdg-data"), "XDG_CONFIG_HOME="+filepath.Join(b.dir, "xdg-config"))
	started := time.Now()
	if err := b.caddy.Start(); err != nil {
		return err
	}
	b.pid = b.caddy.Process.Pid
	deadline := time.Now().Add(2 * time.Minute) // a large store takes a while to open
	bases := append([]string{b.plain, b.plain4, b.plain1}, b.guest["RS256"], b.guest["ES256"], b.guest["EdDSA"], b.authz["RS256"], b.authz["ES256"])
	for _, base := range b.stores {
		bases = append(bases, base)
	}
	for _, base := range bases {
		for {
			conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 100*time.Millisecond)
			if err == nil {
				conn.Close()
				break
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(logFile.Name())
				return fmt.Errorf("caddy did not listen on %s within 2m; its log:\n%s", base, log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	logf("caddy pid %d up after %v; storage %q; RSS %s", b.pid, time.Since(started).Round(time.Millisecond), storageLine, rssNote(b.pid))
	return nil
}

// stop ends Caddy and the upstream; it may be called again.
func (b *bench) stop() {
	if b.caddy != nil && b.caddy.Process != nil {
		defer func() { b.caddy = nil }()
		_ = b.caddy.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = b.caddy.Wait(); close(done) }() // its exit status is of no interest here
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = b.caddy.Process.Kill()
			<-done
		}
	}
	if b.upstream != nil {
		b.upstream.Close()
	}
}

// drive runs op(i) for i in [0,n) from cfg.conc workers and returns the wall
// time; the first error stops it.
func (b *bench) drive(n int, op func(ctx context.Context, i int) error) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.phaseTimeout)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range min(b.cfg.conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := op(ctx, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil && int(next.Load()) < n {
		firstErr = fmt.Errorf("phase did not finish within %v", b.cfg.phaseTimeout)
	}
	return time.Since(start), firstErr
}

// call sends req and checks the status; into, when not nil, gets the JSON
// body.
func (b *bench) call(req *http.Request, into any) error {
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL, resp.StatusCode, body)
	}
	if into != nil {
		return json.NewDecoder(resp.Body).Decode(into)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

func createReq(ctx context.Context, base string) *http.Request {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"guest-user"}, "client_id": {"bench-app"}, "client_secret": {"bench-secret"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

type tokenSet struct {
	AccessToken string `json:"access_token"`
}

// createGuests makes n guests on the site of alg and returns their access
// tokens.
func (b *bench) createGuests(alg string, n int) ([]string, error) {
	toks := make([]string, n)
	_, err := b.drive(n, func(ctx context.Context, i int) error {
		var ts tokenSet
		if err := b.call(createReq(ctx, b.guest[alg]), &ts); err != nil {
			return err
		}
		toks[i] = ts.AccessToken
		return nil
	})
	return toks, err
}

func getReq(ctx context.Context, base, token string) *http.Request {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/app", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// errNotProxied: a guest_auth answer must have reached the upstream with
// the identity headers, or the site would look cheap for the wrong reason.
var errNotProxied = errors.New("the upstream did not get the identity headers")

func (b *bench) proxied(ctx context.Context, base, token string) error {
	resp, err := b.client.Do(getReq(ctx, base, token))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d", base, resp.StatusCode)
	}
	if resp.Header.Get("X-Seen-User-Id") == "" {
		return errNotProxied
	}
	return nil
}

func (b *bench) plainGet(ctx context.Context, base, token string) error {
	return b.call(getReq(ctx, base, token), nil)
}

func upgradeReq(ctx context.Context, base, token, name string) *http.Request {
	body, _ := json.Marshal(map[string]string{"name": name, "password": "bench-password-" + name})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/update-user", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

func signInReq(ctx context.Context, base, name string) *http.Request {
	form := url.Values{"grant_type": {"password"}, "username": {name}, "password": {"bench-password-" + name}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("bench-app", "bench-secret")
	return req
}

// sample is one side of one round.
type sample struct {
	cpu     time.Duration // Caddy's CPU
	sys     time.Duration // the part in the kernel, from /proc (10 ms ticks)
	wall    time.Duration
	foreign float64 // cores used by other processes during the round
	n       int
	retried int
	skewed  bool
}

func (s sample) perOp() time.Duration { return s.cpu / time.Duration(s.n) }
func (s sample) rate() float64        { return float64(s.n) / s.wall.Seconds() }

// side is one measured load: prep (unmeasured, may be nil) then run.
type side struct {
	name string
	n    int
	prep func(round int) error
	run  func(ctx context.Context, i int) error
}

// once measures one side once.
func (b *bench) once(s side) (sample, error) {
	self := os.Getpid()
	c0, err := processCPU(b.pid)
	if err != nil {
		return sample{}, err
	}
	s0, _ := processCPU(self)
	m0, err := machineBusy()
	if err != nil {
		return sample{}, err
	}
	u0, k0, _ := statUserSys(b.pid)
	wall, err := b.drive(s.n, s.run)
	if err != nil {
		return sample{}, fmt.Errorf("%s: %w", s.name, err)
	}
	c1, err := processCPU(b.pid)
	if err != nil {
		return sample{}, err
	}
	s1, _ := processCPU(self)
	m1, _ := machineBusy()
	u1, k1, _ := statUserSys(b.pid)
	cpu := c1 - c0
	// Cross-check against /proc/<pid>/stat (10 ms ticks): a large
	// disagreement means the CPU clock is not what we think.
	if ticks := time.Duration(u1-u0+k1-k0) * 10 * time.Millisecond; cpu > 200*time.Millisecond && (ticks < cpu/2 || ticks > cpu*2) {
		return sample{}, fmt.Errorf("%s: CPU clock %v but /proc/%d/stat says %v", s.name, cpu, b.pid, ticks)
	}
	foreign := (m1 - m0) - cpu - (s1 - s0)
	return sample{cpu: cpu, sys: time.Duration(k1-k0) * 10 * time.Millisecond, wall: wall, n: s.n, foreign: max(float64(foreign)/float64(wall), 0)}, nil
}

// measureSide runs one side, again when foreign load disturbed it.
func (b *bench) measureSide(s side, round int) (sample, error) {
	var best sample
	for try := 0; try <= b.cfg.retries; try++ {
		if s.prep != nil {
			if err := s.prep(round); err != nil {
				return sample{}, fmt.Errorf("%s (preparing): %w", s.name, err)
			}
		}
		smp, err := b.once(s)
		if err != nil {
			return sample{}, err
		}
		smp.retried = try
		if try == 0 || smp.foreign < best.foreign {
			best = smp
		}
		if smp.foreign <= b.cfg.maxForeign {
			return smp, nil
		}
		if try < b.cfg.retries {
			logf("  %s: %.2f foreign cores during the round; running it again", s.name, smp.foreign)
		}
	}
	best.skewed = true
	return best, nil
}

// writeGuestSite adds a guest_auth site to a Caddyfile: its limits are off,
// so the benchmark measures the work and not the throttles.
func writeGuestSite(cf io.Writer, addr, storageLine, issuer, alg string, cacheSize int, upstream string) {
	fmt.Fprintf(cf, `%s {
	guest_auth {
		storage %s
		issuer %s
		signing_alg %s
		client bench-app bench-secret
		guest_limit ip 0 1s
		guest_limit global 0 1s
		signin_limit account 0 1s
		signin_limit device 0 1s
		signin_limit hashes 0 1s
		signin_limit ip 0 1s
		name_change_limit user 0 1s
		name_change_limit ip 0 1s
		max_live_guests 0
		token_cache_size %d
	}
	reverse_proxy %s
}
`, addr, storageLine, issuer, alg, cacheSize, upstream)
}

//go:build linux

package e2e

// BenchmarkProxy measures what guest_auth adds to each proxied request, as
// Caddy CPU time per request relative to a plain reverse_proxy:
//
//	go test -bench BenchmarkProxy -run '^$' -benchtime 20000x ./e2e
//
// One Caddy process serves three sites in front of the same upstream:
// plain reverse_proxy, guest_auth (default token cache) and guest_auth with
// token_cache_size 0. Each sub-benchmark sends b.N requests to the plain
// site and b.N to one guest_auth site, in alternating rounds so both see the
// same machine load, and reads the Caddy process's CPU clock around every
// round. CPU time, not wall time, is the figure to trust on a shared
// machine; req/s also counts the load generator and upstream, which run in
// this process. ns/op is suppressed: it would mix both sites.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

const (
	benchConcurrency = 8
	// benchPhaseLimit bounds one round, so a stuck server cannot hang the run.
	benchPhaseLimit = 2 * time.Minute
)

func BenchmarkProxy(b *testing.B) {
	s := newServer(b) // s.Port: guest_auth with the cache, so s.createGuest works
	plainPort, noCachePort := freePort(b), freePort(b)
	up := strings.TrimPrefix(s.Upstream.URL, "http://")
	// One issuer and one store for both guest_auth sites, so one token is
	// valid on both.
	guest := func(port int, extra string) string {
		return fmt.Sprintf(`http://127.0.0.1:%d {
	guest_auth {
		storage %s
		issuer http://guestauth.bench
		client demo-app demo-secret
		%s
	}
	reverse_proxy %s
}
`, port, s.DB, extra, up)
	}
	s.Start(fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	reverse_proxy %s
}
`, s.Admin, plainPort, up) + guest(s.Port, "") + guest(noCachePort, "token_cache_size 0"))
	for _, p := range []int{plainPort, noCachePort} {
		waitListening(b, p)
	}
	token := s.createGuest().AccessToken
	pid := s.cmd.Process.Pid

	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: benchConcurrency,
		DisableCompression:  true,
	}}
	defer client.CloseIdleConnections()
	plain := benchSite{url: fmt.Sprintf("http://127.0.0.1:%d/app", plainPort)}
	cached := benchSite{url: s.Base + "/app", token: token}
	uncached := benchSite{url: fmt.Sprintf("http://127.0.0.1:%d/app", noCachePort), token: token}

	// The guest_auth sites must really authenticate: an answer that never
	// reached the upstream would make them look cheap.
	for _, site := range []benchSite{cached, uncached} {
		resp, err := site.get(client)
		if err != nil {
			b.Fatal(err)
		}
		if resp.Header.Get("X-Auth-User-Id") == "" {
			b.Fatalf("%s: the upstream got no identity headers: %v", site.url, resp.Header)
		}
	}
	// Warm up connections, caches and Caddy's heap.
	for _, site := range []benchSite{plain, cached, uncached} {
		if _, err := site.drive(client, 500); err != nil {
			b.Fatal(err)
		}
	}

	for _, c := range []struct {
		name  string
		guest benchSite
	}{{"token_cache", cached}, {"no_token_cache", uncached}} {
		b.Run(c.name, func(b *testing.B) {
			var plainCPU, guestCPU, plainWall, guestWall time.Duration
			var ticks int64
			rounds := min(8, max(1, b.N/500))
			for r := range rounds {
				n := b.N/rounds + btoi(r < b.N%rounds)
				for _, m := range []struct {
					site      benchSite
					cpu, wall *time.Duration
				}{{plain, &plainCPU, &plainWall}, {c.guest, &guestCPU, &guestWall}} {
					cpu0, t0 := processCPU(b, pid), procStatTicks(b, pid)
					wall, err := m.site.drive(client, n)
					if err != nil {
						b.Fatal(err)
					}
					*m.cpu += processCPU(b, pid) - cpu0
					*m.wall += wall
					ticks += procStatTicks(b, pid) - t0
				}
			}
			perReq := func(d time.Duration) float64 { return float64(d) / 1e3 / float64(b.N) }
			rate := func(d time.Duration) float64 { return float64(b.N) / d.Seconds() }
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(perReq(plainCPU), "plain-cpu-us/req")
			b.ReportMetric(perReq(guestCPU), "guest-cpu-us/req")
			b.ReportMetric(perReq(guestCPU-plainCPU), "extra-cpu-us/req")
			b.ReportMetric(float64(guestCPU)/float64(plainCPU), "cpu-ratio")
			b.ReportMetric(rate(plainWall), "plain-req/s")
			b.ReportMetric(rate(guestWall), "guest-req/s")
			// Cross-check of the CPU clock against /proc/<pid>/stat (10 ms ticks).
			b.Logf("N=%d in %d rounds: CPU clock %v, /proc stat %v", b.N, rounds,
				(plainCPU + guestCPU).Round(time.Millisecond), time.Duration(ticks)*10*time.Millisecond)
		})
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// benchSite is one site under load.
type benchSite struct {
	url, token string
}

func (s benchSite) request() *http.Request {
	req, err := http.NewRequest(http.MethodGet, s.url, nil)
	if err != nil {
		panic(err)
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	return req
}

// get sends one request and returns the upstream's echo of its headers.
func (s benchSite) get(client *http.Client) (*http.Response, error) {
	resp, err := client.Do(s.request())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", s.url, resp.StatusCode)
	}
	var echo http.Header
	if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
		return nil, err
	}
	resp.Header = echo
	return resp, nil
}

// drive sends n requests from benchConcurrency keep-alive workers and
// returns the wall time; any non-200 answer fails the run.
func (s benchSite) drive(client *http.Client, n int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), benchPhaseLimit)
	defer cancel()
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	var wg sync.WaitGroup
	start := time.Now()
	for range benchConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := s.request().WithContext(ctx) // reusable: no body
			for next.Add(1) <= int64(n) {
				resp, err := client.Do(req)
				if err != nil {
					fail(err)
					return
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					fail(err)
					return
				}
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Errorf("%s: status %d", s.url, resp.StatusCode))
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), firstErr
}

func waitListening(tb testing.TB, port int) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("port %d not listening after 20s", port)
}

// processCPU is the CPU time used so far by every thread of process pid,
// in nanoseconds: clock_gettime on its process CPU-time clock, whose id is
// Linux's MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED).
func processCPU(tb testing.TB, pid int) time.Duration {
	clock := int32(^int32(pid))<<3 | 2
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, uintptr(clock), uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		tb.Fatalf("clock_gettime(cpu clock of %d): %v", pid, errno)
	}
	return time.Duration(ts.Nano())
}

// procStatTicks is utime+stime from /proc/<pid>/stat, in clock ticks.
func procStatTicks(tb testing.TB, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the parenthesized command name; utime and stime are the
	// 14th and 15th fields of the line.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("parsing /proc/%d/stat: %q", pid, b)
	}
	return utime + stime
}

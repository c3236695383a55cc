//go:build linux

package e2e

// BenchmarkStorageKinds compares bbolt and PostgreSQL storage, one Caddy
// process at a time, for guest creation (ES256 and RS256), the first
// proxied request of a token (identity and token caches cold), a proxied
// request on a cache hit, and a refresh:
//
//	eval "$(.ci/postgres.sh start)"
//	go test -bench BenchmarkStorageKinds -run '^$' -benchtime 2000x ./e2e
//
// With GUEST_AUTH_BENCH_WEBHOOK=1 each Caddy also has a webhook (a local
// receiver answering 204): events then go through the store's outbox,
// written in the guest creation's transaction, on both backends.
//
// Per operation it reports wall rate (ops/s, 8 concurrent clients), Caddy
// CPU (µs/op) and, on PostgreSQL, the CPU of the guestauth backends of the
// database server (µs/op, from /proc, 10ms ticks).

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

func BenchmarkStorageKinds(b *testing.B) {
	for _, kind := range []string{"bolt", "postgres"} {
		for _, alg := range []string{"ES256", "RS256"} {
			b.Run(kind+"/"+alg, func(b *testing.B) { benchStorage(b, kind, alg) })
		}
	}
}

func benchStorage(b *testing.B, kind, alg string) {
	s := newServer(b)
	var dsn string
	if kind == "postgres" {
		dsn = pgtest.DSN(b)
		s.DB = fmt.Sprintf("postgres %q", dsn)
	}
	opts := "issuer http://bench.test\n\t\tguest_limit global 1000000 1ms\n\t\tsigning_alg " + alg
	if os.Getenv("GUEST_AUTH_BENCH_WEBHOOK") == "1" {
		// With a webhook (through the store's outbox): a receiver that
		// accepts everything.
		hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
		defer hook.Close()
		opts += "\n\t\twebhook " + hook.URL + "/hook bench-secret"
	}
	s.Start(s.siteConfig(opts))
	pid := s.cmd.Process.Pid
	pgTicks := func() int64 { return 0 }
	if kind == "postgres" {
		conn, err := pgx.Connect(context.Background(), pgtest.ServerDSN(b))
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close(context.Background())
		pgTicks = func() int64 {
			rows, err := conn.Query(context.Background(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, pgtest.AppName(b, dsn))
			if err != nil {
				b.Fatal(err)
			}
			pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
			if err != nil {
				b.Fatal(err)
			}
			var t int64
			for _, p := range pids {
				t += procStatTicks(b, int(p))
			}
			return t
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchConcurrency, DisableCompression: true}}
	defer client.CloseIdleConnections()

	// run sends n requests made by mk(i) from benchConcurrency workers and
	// reports rate and CPU per request.
	run := func(name string, n int, mk func(i int) *http.Request, keep func(i int, resp *http.Response)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		var failed atomic.Value
		cpu0, pg0, t0 := processCPU(b, pid), pgTicks(), time.Now()
		for range benchConcurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					resp, err := client.Do(mk(i))
					if err != nil {
						failed.Store(err)
						return
					}
					if resp.StatusCode != http.StatusOK {
						failed.Store(fmt.Errorf("%s: status %d", name, resp.StatusCode))
					} else if keep != nil {
						keep(i, resp)
					}
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
		wall, cpu, pg := time.Since(t0), processCPU(b, pid)-cpu0, pgTicks()-pg0
		if err := failed.Load(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(n)/wall.Seconds(), name+"/s")
		b.ReportMetric(float64(cpu)/1e3/float64(n), name+"-caddy-us")
		if kind == "postgres" {
			b.ReportMetric(float64(pg)*1e4/float64(n), name+"-pg-us") // 10ms ticks
		}
	}
	n := b.N
	toks := make([]tokenSet, n)
	post := func(path, body string, headers ...string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, s.Base+path, strings.NewReader(body))
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		return req
	}
	guestBody := `{"grant_type":"authorization_code","client_id":"demo-app","client_secret":"demo-secret","code":"guest-user"}`
	for i := range 50 { // warm-up
		_ = i
		s.createGuest()
	}
	b.ReportMetric(0, "ns/op")
	run("create", n, func(int) *http.Request {
		return post("/oauth/token", guestBody, "Content-Type", "application/json")
	}, func(i int, resp *http.Response) {
		if err := decodeJSON(resp, &toks[i]); err != nil {
			panic(err)
		}
	})
	get := func(i int) *http.Request {
		req, _ := http.NewRequest(http.MethodGet, s.Base+"/app", nil)
		req.Header.Set("Authorization", "Bearer "+toks[i].AccessToken)
		return req
	}
	time.Sleep(500 * time.Millisecond) // the change log of the creations read
	run("miss", n, get, nil)
	run("hit", n, func(i int) *http.Request { return get(i % 8) }, nil)
	run("refresh", n, func(i int) *http.Request {
		return post("/oauth/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {toks[i].RefreshToken}}.Encode(),
			"Content-Type", "application/x-www-form-urlencoded", "Authorization", basicAuth("demo-app", "demo-secret"))
	}, nil)
}

package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// ownPostgres starts a PostgreSQL server of the test's own (the shared one
// must not go down under the other tests) with .ci/postgres.sh, and returns
// its URL and a function running the script's other commands on it.
func ownPostgres(t *testing.T) (dsn string, ctl func(cmd string)) {
	t.Helper()
	pgtest.ServerDSN(t) // skip (or fail in CI) as the other PostgreSQL tests do
	script, err := filepath.Abs("../.ci/postgres.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "guestauth-pg-own-") // the postgres user must reach it
	if err != nil {
		t.Fatal(err)
	}
	ctl = func(cmd string) {
		t.Helper()
		if out, err := exec.Command("bash", script, cmd, dir).CombinedOutput(); err != nil {
			t.Fatalf("postgres.sh %s: %v\n%s", cmd, err, out)
		}
	}
	out, err := exec.Command("bash", script, "start", dir).Output()
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("postgres.sh start: %v", err)
	}
	t.Cleanup(func() { exec.Command("bash", script, "stop", dir).Run() })
	m := regexp.MustCompile(`GUEST_AUTH_TEST_POSTGRES='([^']+)'`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("postgres.sh start printed no URL: %s", out)
	}
	return string(m[1]), ctl
}

// PostgreSQL down: requests that need the store get 503 with Retry-After
// (never 500, never anonymous), cached identities included (fail-safe: the
// node stops trusting its cache once its change-log connection fails, long
// before max_staleness); once the server is back everything works again on
// its own, and nothing that was acknowledged is lost.
func TestPostgresOutageAndRecovery(t *testing.T) {
	t.Parallel()
	dsn, ctl := ownPostgres(t)
	s := newServer(t)
	s.DB = `postgres "` + dsn + `" {
			statement_timeout 2s
			max_staleness 1h
		}`
	s.Start(s.siteConfig("issuer http://cluster.test"))
	seen := s.createGuest()
	unseen := s.createGuest() // acknowledged, never used on the proxy yet
	// Cache seen's identity: a read that overlaps the node's reading of the
	// change log (here: of these creations) is not cached, so read again
	// once it has settled.
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		if r := s.get("/app", seen.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("before the outage: %d %s", r.Status, r.Body)
		}
	}

	ctl("pause")
	want503 := func(what string, r *response) {
		t.Helper()
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s while PostgreSQL is down: %d (Retry-After %q) %s", what, r.Status, r.Header.Get("Retry-After"), r.Body)
		}
	}
	want503("a new guest", s.postJSON("/oauth/token", guestRequest("demo-app", "demo-secret")))
	want503("a refresh", s.refresh(seen.RefreshToken))
	want503("an identity not cached", s.get("/app", unseen.AccessToken))
	// The node sees its change-log connection break within milliseconds
	// of the shutdown (max_staleness is 1h here).
	var cached *response
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cached = s.get("/app", seen.AccessToken); cached.Status != http.StatusOK {
			break
		}
	}
	want503("a cached identity", cached)

	ctl("resume")
	var r *response
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if r = s.postJSON("/oauth/token", guestRequest("demo-app", "demo-secret")); r.Status == http.StatusOK {
			break
		}
		want503("a new guest while reconnecting", r)
	}
	if r.Status != http.StatusOK {
		t.Fatalf("no recovery: %d %s", r.Status, r.Body)
	}
	if r := s.get("/app", unseen.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("the guest acknowledged before the outage: %d %s", r.Status, r.Body)
	}
	decodeTokens(t, s.refresh(seen.RefreshToken))
}

// PostgreSQL restarted under load on two nodes: requests get 200 or 503
// (never another status), and every guest a node acknowledged works on the
// other node afterwards.
func TestPostgresRestartDuringLoad(t *testing.T) {
	t.Parallel()
	dsn, ctl := ownPostgres(t)
	var nodes []*server
	for range 2 {
		s := newServer(t)
		s.DB = `postgres "` + dsn + `" {
			statement_timeout 2s
		}`
		s.Start(s.siteConfig("issuer http://cluster.test"))
		nodes = append(nodes, s)
	}
	a, b := nodes[0], nodes[1]
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range strings.Split(b.Logs(), "\n") {
				if strings.Contains(l, "unavailable") {
					t.Log("B: " + l)
				}
			}
		}
	})
	storm := startGuestStorm(t, a.Base, 4, 5*time.Millisecond, false)
	eventually(t, "guests before the restart", func() bool { return storm.count(http.StatusOK) >= 10 })
	ctl("pause")
	eventually(t, "503s while PostgreSQL is down", func() bool { return storm.count(http.StatusServiceUnavailable) >= 5 })
	ctl("resume")
	before := storm.count(http.StatusOK)
	eventually(t, "guests after the restart", func() bool { return storm.count(http.StatusOK) >= before+10 })
	acked, statuses := storm.end()
	for status := range statuses {
		if status != http.StatusOK && status != http.StatusServiceUnavailable {
			t.Fatalf("statuses during the restart: %v", statuses)
		}
	}
	for _, ts := range acked {
		if r := b.get("/app", ts.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("a guest acknowledged around the restart is refused on B: %d %s", r.Status, r.Body)
		}
	}
	t.Logf("statuses %v; %d acknowledged guests all served by B", statuses, len(acked))
}

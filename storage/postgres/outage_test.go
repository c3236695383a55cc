package postgres_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// ownServer starts a PostgreSQL server of the test's own with
// .ci/postgres.sh (the shared one must not go down under the other tests)
// and returns its URL and a function running the script's other commands
// (pause, resume) on it.
func ownServer(t *testing.T) (dsn string, ctl func(cmd string)) {
	t.Helper()
	pgtest.ServerDSN(t) // skip (or fail in CI) as the other PostgreSQL tests do
	script, err := filepath.Abs("../../.ci/postgres.sh")
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
	t.Cleanup(func() { _ = exec.Command("bash", script, "stop", dir).Run() })
	m := regexp.MustCompile(`GUEST_AUTH_TEST_POSTGRES='([^']+)'`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("postgres.sh start printed no URL: %s", out)
	}
	return string(m[1]), ctl
}

// While the database is down, a cached identity is not served: the node
// knows it is cut off from the change log (its connection broke) and reads
// through, answering ErrUnavailable (503 for the request) at once, well
// within max_staleness, which bounds only a cut it cannot see. Once the
// database is back, the identity is served again.
func TestOutageStopsTheCacheAtOnce(t *testing.T) {
	t.Parallel()
	dsn, ctl := ownServer(t)
	p := open(t, dsn, postgres.Options{SyncInterval: 50 * time.Millisecond, MaxStaleness: time.Hour, StatementTimeout: 2 * time.Second})
	mustCreate(t, p, "u1")
	cachedPair(t, p, "u1", "su1")

	ctl("pause")
	start := time.Now()
	var err error
	for time.Since(start) < 10*time.Second {
		if _, _, err = p.Identity(bg, "u1", "su1"); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("a cached identity while the database is down: %v, want ErrUnavailable", err)
	}
	t.Logf("cached identity refused %v after the outage began (max_staleness 1h)", time.Since(start).Round(time.Millisecond))
	if time.Since(start) > 2*time.Second {
		t.Fatalf("the cache was trusted for %v into the outage", time.Since(start))
	}

	ctl("resume")
	eventually(t, "the identity served again", func() bool {
		_, _, err := p.Identity(bg, "u1", "su1")
		return err == nil
	})
}

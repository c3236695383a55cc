package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/storage/postgres"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// pgNodes starts n Caddy processes sharing one fresh PostgreSQL schema, one
// after the other, with one issuer (as one site behind a load balancer).
func pgNodes(t *testing.T, n int, options string) []*server {
	t.Helper()
	return pgNodesOn(t, pgtest.DSN(t), n, options)
}

// pgNodesOn is pgNodes on a given database, for tests that also reach it
// directly.
func pgNodesOn(t *testing.T, dsn string, n int, options string) []*server {
	t.Helper()
	nodes := make([]*server, n)
	for i := range nodes {
		s := newServer(t)
		s.DB = fmt.Sprintf("postgres %q", dsn)
		s.Start(s.siteConfig("issuer http://cluster.test\n" + options))
		nodes[i] = s
	}
	return nodes
}

// A guest created on node A is known on node B: its token verifies there
// (the signing keys are the database's), its identity reaches B's upstream,
// and its refresh token works on B.
func TestPostgresGuestCreatedOnAUsedOnB(t *testing.T) {
	t.Parallel()
	nodes := pgNodes(t, 2, "")
	a, b := nodes[0], nodes[1]
	ts := a.createGuest()
	if r := b.get("/app", ts.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("A's guest on B: %d %s", r.Status, r.Body)
	}
	_, claims := jwtParts(t, ts.AccessToken)
	if got := b.Upstream.Headers().Get("X-Auth-User-Id"); got == "" || got != claims["sub"] {
		t.Fatalf("B's upstream saw user %q, want %v", got, claims["sub"])
	}
	r := b.refresh(ts.RefreshToken)
	next := decodeTokens(t, r)
	if r := a.get("/app", next.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("B's refreshed token on A: %d %s", r.Status, r.Body)
	}
	// The rotated-out refresh token is refused on either node.
	if r := a.refresh(ts.RefreshToken); r.Status == http.StatusOK {
		t.Fatal("A accepted the refresh token B rotated out")
	}
}

// Postgres storage refuses to start without an issuer: every instance on
// the database shares its keys.
func TestPostgresNeedsIssuer(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.DB = fmt.Sprintf("postgres %q", pgtest.DSN(t))
	err := s.tryStart(s.siteConfig(""))
	if err == nil || !strings.Contains(s.Logs(), "set issuer") {
		t.Fatalf("started without an issuer: %v\n%s", err, s.Logs())
	}
}

// rotateKeys rotates through the CLI and returns the new kid.
func (s *server) rotateKeys() string {
	s.t.Helper()
	kid, _ := s.cliJSON("rotate-keys")["kid"].(string)
	if kid == "" {
		s.t.Fatal("rotate-keys printed no kid")
	}
	return kid
}

// Key rotation on bbolt: the new key signs, tokens signed before still
// work, the discovery JWKS lists both.
func TestRotateKeysBolt(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	before := s.createGuest()
	kid := s.rotateKeys()
	after := s.createGuest()
	if hdr, _ := jwtParts(t, after.AccessToken); hdr["kid"] != kid {
		t.Fatalf("a token after rotation names kid %v, want %s", hdr["kid"], kid)
	}
	for _, ts := range []tokenSet{before, after} {
		if r := s.get("/app", ts.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("token after rotation: %d %s", r.Status, r.Body)
		}
	}
	if _, set, _ := s.discover(); set.Len() != 2 {
		t.Fatalf("JWKS after rotation: %d keys", set.Len())
	}
	wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/keys/rotate", nil), http.StatusMethodNotAllowed, "not allowed")
}

// A key rotated on node A signs there at once and verifies on node B,
// which loaded its keys before.
func TestPostgresKeyRotatedOnAVerifiesOnB(t *testing.T) {
	t.Parallel()
	nodes := pgNodes(t, 2, "")
	a, b := nodes[0], nodes[1]
	old := a.createGuest()
	kid := a.rotateKeys()
	ts := a.createGuest()
	if hdr, _ := jwtParts(t, ts.AccessToken); hdr["kid"] != kid {
		t.Fatalf("A signs with %v after rotating to %s", hdr["kid"], kid)
	}
	for _, tok := range []string{ts.AccessToken, old.AccessToken} {
		if r := b.get("/app", tok); r.Status != http.StatusOK {
			t.Fatalf("B refused A's token: %d %s", r.Status, r.Body)
		}
	}
	r := b.get("/.well-known/jwks.json", "")
	var set struct{ Keys []map[string]any }
	if err := json.Unmarshal(r.Body, &set); r.Status != http.StatusOK || err != nil || len(set.Keys) != 2 {
		t.Fatalf("B's JWKS after A rotated: %d %s", r.Status, r.Body)
	}
}

// caddy guest-auth migrate needs no running Caddy; it reads the connection
// string from the environment, never from the command line, and never
// prints the password.
func TestPostgresMigrateCommand(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	run := func(env ...string) (string, error) {
		cmd := exec.Command(caddyBin, "guest-auth", "migrate", "--dsn-env", "GA_MIGRATE_DSN")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run(); err == nil || !strings.Contains(out, "GA_MIGRATE_DSN is empty") {
		t.Fatalf("no DSN: %v: %s", err, out)
	}
	out, err := run("GA_MIGRATE_DSN=" + dsn)
	if err != nil || !strings.Contains(out, `"from_version": 0`) || !strings.Contains(out, fmt.Sprintf(`"to_version": %d`, postgres.SchemaVersion())) {
		t.Fatalf("migrate: %v: %s", err, out)
	}
	out, err = run("GA_MIGRATE_DSN=" + dsn)
	if err != nil || !strings.Contains(out, fmt.Sprintf(`"from_version": %d`, postgres.SchemaVersion())) {
		t.Fatalf("migrate again: %v: %s", err, out)
	}
	u, _ := url.Parse(dsn)
	u.User = url.UserPassword("nobody", "hunter2-secret")
	u.Host = "127.0.0.1:1"
	if out, err := run("GA_MIGRATE_DSN=" + u.String()); err == nil || strings.Contains(out, "hunter2-secret") {
		t.Fatalf("unreachable server: %v: %s", err, out)
	}
}

func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

func decodeJSON(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}

// A config reload reuses the open pool: the node keeps its database
// connections (no reconnect per reload), and keeps serving.
func TestPostgresReloadReusesPool(t *testing.T) {
	t.Parallel()
	app := fmt.Sprintf("ga_reload_%d", time.Now().UnixNano())
	dsn := pgtest.DSN(t)
	u, _ := url.Parse(dsn)
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	s := newServer(t)
	s.DB = fmt.Sprintf("postgres %q", u.String())
	s.Start(s.siteConfig("issuer http://cluster.test"))
	g := s.createGuest()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	backends := func() []int32 {
		rows, err := conn.Query(t.Context(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid`, app)
		if err != nil {
			t.Fatal(err)
		}
		pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			t.Fatal(err)
		}
		return pids
	}
	before := backends()
	if len(before) == 0 {
		t.Fatal("no connections of the node found")
	}
	s.Reload(s.siteConfig("issuer http://cluster.test\n\t\tguest_ttl 48h"))
	if r := s.get("/app", g.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("after the reload: %d %s", r.Status, r.Body)
	}
	s.createGuest()
	after := backends()
	for _, pid := range before {
		if !slices.Contains(after, pid) {
			t.Fatalf("the reload closed connection %d: before %v, after %v", pid, before, after)
		}
	}
}

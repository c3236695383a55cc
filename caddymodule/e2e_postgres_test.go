package caddymodule_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// pgNodes starts n Caddy processes sharing one fresh PostgreSQL schema, one
// after the other, with one issuer (as one site behind a load balancer).
func pgNodes(t *testing.T, n int, options string) []*server {
	t.Helper()
	dsn := pgtest.DSN(t)
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

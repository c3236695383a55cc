package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// eventually waits until cond holds (up to 15s, far above the 1s bound the
// defaults give): the tests assert convergence, not its speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never converged: %s", what)
}

// An upgrade on B shows on A, where the guest's identity was cached; a
// logout on A and an admin delete on A are refused on B.
func TestPostgresChangesReachTheOtherNode(t *testing.T) {
	t.Parallel()
	nodes := pgNodes(t, 2, "")
	a, b := nodes[0], nodes[1]

	g := a.createGuest()
	if r := a.get("/app", g.AccessToken); r.Status != http.StatusOK { // cached on A
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	wantEnvelope(t, b.updateUser(g.AccessToken, map[string]string{"name": "Upgraded"}), http.StatusOK, "ok")
	eventually(t, "B's upgrade shows on A", func() bool {
		r := a.get("/app", g.AccessToken)
		return r.Status == http.StatusOK && a.Upstream.Headers().Get("X-Auth-User-Name") == "Upgraded"
	})

	out := a.createGuest()
	if r := b.get("/app", out.AccessToken); r.Status != http.StatusOK { // cached on B
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	wantEnvelope(t, a.do(http.MethodPost, "/api/logout", nil, "Authorization", "Bearer "+out.AccessToken), http.StatusOK, "ok")
	eventually(t, "A's logout is refused on B", func() bool { return b.get("/app", out.AccessToken).Status == http.StatusUnauthorized })

	del := a.createGuest()
	if r := b.get("/app", del.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	if r := a.admin(http.MethodDelete, "/guest_auth/users/"+userID(t, del), nil); r.Status != http.StatusOK {
		t.Fatalf("admin delete on A: %d %s", r.Status, r.Body)
	}
	eventually(t, "A's admin delete is refused on B", func() bool { return b.get("/app", del.AccessToken).Status == http.StatusUnauthorized })
}

// Concurrent upgrades to one name on two nodes: exactly one wins.
func TestPostgresConcurrentUpgradesAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := pgNodes(t, 2, "")
	for round := range 5 {
		name := fmt.Sprintf("Contested%d", round)
		var wg sync.WaitGroup
		status := make([]int, 2)
		for i, s := range nodes {
			g := s.createGuest()
			wg.Add(1)
			go func() {
				defer wg.Done()
				status[i] = s.updateUser(g.AccessToken, map[string]string{"name": name}).Status
			}()
		}
		wg.Wait()
		ok, conflict := 0, 0
		for _, st := range status {
			switch st {
			case http.StatusOK:
				ok++
			case http.StatusConflict:
				conflict++
			}
		}
		if ok != 1 || conflict != 1 {
			t.Fatalf("round %d: statuses %v, want one 200 and one 409", round, status)
		}
	}
}

// The follower connections killed (pg_terminate_backend): a node still
// converges.
func TestPostgresListenerKilled(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	nodes := pgNodesOn(t, dsn, 2, "")
	a, b := nodes[0], nodes[1]
	g := a.createGuest()
	if r := b.get("/app", g.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("%d %s", r.Status, r.Body)
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var killed int
	if err := conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND (query LIKE 'LISTEN%' OR query LIKE '%guestauth_changes c%') AND pid <> pg_backend_pid()`, pgtest.AppName(t, dsn)).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("killed %d listener connections: %v", killed, err)
	}
	wantEnvelope(t, a.updateUser(g.AccessToken, map[string]string{"name": "AfterKill"}), http.StatusOK, "ok")
	eventually(t, "A's upgrade shows on B after its listener was killed", func() bool {
		r := b.get("/app", g.AccessToken)
		return r.Status == http.StatusOK && b.Upstream.Headers().Get("X-Auth-User-Name") == "AfterKill"
	})
}

// kill -9 of node A during a guest storm: every guest whose tokens A
// returned works on B, which keeps serving.
func TestPostgresNodeKilledDuringStorm(t *testing.T) {
	t.Parallel()
	nodes := pgNodes(t, 2, "")
	a, b := nodes[0], nodes[1]
	storm := startGuestStorm(t, a.Base, 8, 0, true)
	eventually(t, "A created guests", func() bool { return storm.count(http.StatusOK) >= 30 })
	a.kill()
	got, _ := storm.end()
	for _, ts := range got {
		if r := b.get("/app", ts.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("a guest A acknowledged before dying is refused on B: %d %s", r.Status, r.Body)
		}
	}
	b.createGuest()
	t.Logf("%d guests acknowledged by A before kill -9, all served by B", len(got))
}

// Guest expiry on a cluster: the sweep runs on one node at a time, and a
// guest idle past guest_ttl is gone for every node; an active one stays.
func TestPostgresGuestExpiryAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := pgNodes(t, 2, "guest_ttl 2s\n\t\tsweep_interval 300ms\n\t\tactivity_flush_interval 100ms")
	a, b := nodes[0], nodes[1]
	idle, active := a.createGuest(), a.createGuest()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(a.Logs())
		}
	})
	// Only the active guest is used (on B); using the idle one would count
	// as activity, so the store is asked instead.
	eventually(t, "the idle guest expires", func() bool {
		if r := b.get("/app", active.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("the active guest expired: %d %s", r.Status, r.Body)
		}
		time.Sleep(200 * time.Millisecond)
		return a.admin(http.MethodGet, "/guest_auth/users/"+userID(t, idle), nil).Status == http.StatusNotFound
	})
	for _, s := range nodes {
		if r := s.get("/app", idle.AccessToken); r.Status != http.StatusUnauthorized {
			t.Fatalf("the expired guest still works: %d", r.Status)
		}
	}
}

// Failed sign-ins split across two nodes on one database lock the account
// at the configured burst (the budget is the database's, not each node's),
// and the lock shows on both nodes; the per-IP budget stays per node.
func TestPostgresSignInBudgetAcrossNodes(t *testing.T) {
	t.Parallel()
	dsn := pgtest.DSN(t)
	nodes := pgNodesOn(t, dsn, 2, "signin_limit account 4 1h")
	a := nodes[0]
	g := a.createGuest()
	wantEnvelope(t, a.updateUser(g.AccessToken, map[string]string{"name": "clara", "password": "clara-password"}), http.StatusOK, "ok")
	for i := range 4 {
		r := nodes[i%2].signInWith("clara", fmt.Sprintf("guess-%02d-pw", i), "")
		if r.Status != http.StatusBadRequest || r.JSON(t)["error"] != "invalid_grant" {
			t.Fatalf("guess %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	for _, s := range nodes {
		r := s.signInWith("clara", "clara-password", "")
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Fatalf("right password with the cluster's budget spent: %d %s", r.Status, r.Body)
		}
	}
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var n int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM guestauth_limits WHERE name = 'http://cluster.test signin_account'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("account budget rows: %d, %v; want 1", n, err)
	}
}

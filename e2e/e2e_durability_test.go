package e2e

import (
	"net/http"
	"testing"
)

// kill -9 of Caddy during a guest storm on bbolt: every guest whose tokens
// were returned is on disk, so after a restart on the same file each of
// them still works. A guest is answered only after the commit holding it
// is fsync'd, however many guests share that commit.
func TestBoltKilledDuringGuestStorm(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	cfg := s.siteConfig("")
	s.Start(cfg)
	storm := startGuestStorm(t, s.Base, 16, 0, true)
	eventually(t, "guests created", func() bool { return storm.count(http.StatusOK) >= 200 })
	s.kill()
	got, _ := storm.end()
	s.Start(cfg)
	defer s.Stop()
	for _, ts := range got {
		if r := s.get("/app", ts.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("a guest acknowledged before kill -9 is refused after the restart: %d %s", r.Status, r.Body)
		}
	}
	s.createGuest()
	t.Logf("%d guests acknowledged before kill -9, all served after the restart", len(got))
}

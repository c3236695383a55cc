package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// `storage bolt <path>` names the same store as `storage <path>`: a reload
// from one form to the other keeps the open file (no second open on the
// locked file), the admin API finds it by its path, and the data is there.
func TestStorageBoltKindInCaddyfile(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	plain := s.siteConfig("")
	kinded := strings.Replace(plain, "storage "+s.DB, "storage bolt "+s.DB, 1)
	if kinded == plain {
		t.Fatal("the site config has no storage line to rewrite")
	}
	s.Start(kinded)
	g := s.createGuest()
	if st := s.adminOK(http.MethodGet, "/guest_auth/stats?storage="+s.DB, nil); st["users"] != float64(1) || st["path"] != s.DB {
		t.Fatalf("stats of the bolt store: %v", st)
	}
	s.Reload(plain)
	if r := s.get("/app", g.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("after a reload to the plain form: %d %s", r.Status, r.Body)
	}
	s.Stop()
	if users := storedUsers(t, s.DB); len(users) != 1 || users[0].ID != userID(t, g) {
		t.Fatalf("stored users: %+v", users)
	}
}

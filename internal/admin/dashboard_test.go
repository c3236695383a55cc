package admin

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/dashboard"
)

// GET /guest_auth/dashboard: the dashboard's report as JSON, from the
// store's counters; days is checked.
func TestAdminDashboardAPI(t *testing.T) {
	s := newTestSite(t)
	a, b, c := s.guest(), s.guest(), s.guest()
	name, pw := "quinn", "correct horse battery"
	if _, _, err := s.svc.ManageUpdate(context.Background(), a, accounts.UserChange{Name: &name, Password: &pw, ClientID: "app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.svc.DeleteUser(context.Background(), b, "admin"); err != nil {
		t.Fatal(err)
	}
	_ = c
	status, _, body := s.call("GET", "/guest_auth/dashboard?days=90", "")
	if status != 200 {
		t.Fatalf("dashboard: %d %s", status, body)
	}
	var rep dashboard.Report
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Days) != 90 || len(rep.Windows) != 2 || rep.Windows[0].Days != 30 || rep.Windows[1].Days != 90 {
		t.Fatalf("days %d, windows %+v", len(rep.Days), rep.Windows)
	}
	w := rep.Windows[0]
	if rep.Now.Guests != 1 || rep.Now.Members != 1 || w.Created != 3 || w.Upgraded != 1 || w.UpgradedBy["password"] != 1 ||
		w.Deleted != 1 || w.CohortUpgraded != 1 || w.Conversion == nil || *w.Conversion != 0.3333 || w.MedianUpgrade == nil {
		t.Fatalf("report: now %+v, window %+v", rep.Now, w)
	}
	for _, bad := range []string{"0", "367", "x"} {
		if status, _, _ := s.call("GET", "/guest_auth/dashboard?days="+bad, ""); status != 400 {
			t.Errorf("days=%s: %d", bad, status)
		}
	}
}

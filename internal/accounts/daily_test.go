package accounts_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/webauthntest"
	"github.com/guestauth/caddy-guestauth/storage"
)

// daily reads the store's daily counters of one UTC day as a map.
func daily(t *testing.T, st storage.Backend, day string) map[string]int64 {
	t.Helper()
	cs, err := st.Daily(bg, day, day)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for _, c := range cs {
		m[c.Series] = c.N
	}
	return m
}

func wantDaily(t *testing.T, step string, got map[string]int64, want map[string]int64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: daily counters %v, want %v", step, got, want)
	}
}

// Every upgrade path reports its method in guest.upgraded, and every
// lifecycle write adds its daily counts in the store, on UTC days: the
// guests are created just before midnight and upgraded just after, so the
// upgrade counts on the new day and the cohort on the old one. No webhook
// (no Stager) is configured: the counts do not depend on one.
func TestDailyCountsAndUpgradeMethods(t *testing.T) {
	t.Parallel()
	f := newEmailFixture(t, func(c *accounts.Config) { c.BrowserUnconfirmed = time.Hour })
	f.clock.t = time.Date(2030, 1, 1, 23, 59, 0, 0, time.UTC)
	const iss = issuer
	var guests []*accounts.BrowserLogin
	for range 4 {
		g, err := f.svc.CreateBrowserGuest(bg, iss, "10.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		guests = append(guests, g)
	}
	f.obs.take()
	f.clock.Advance(90 * time.Second) // 2030-01-02 00:00:30 UTC

	// password: the sign-up form (UpdateBrowserProfile).
	name, pw := "rosa", "correct horse"
	_, _, err := f.svc.UpdateBrowserProfile(bg, identityOf(t, f.fixture, guests[0]), accounts.ProfileUpdate{Name: &name, Password: &pw, Issuer: iss})
	if err != nil {
		t.Fatal(err)
	}
	f.obs.wantOne(t, "sign-up", events.GuestUpgraded, guests[0].User.ID, map[string]any{"method": "password"})

	// password: the manage API.
	name2, pw2 := "ines", "battery staple"
	if _, _, err := f.svc.ManageUpdate(bg, guests[1].User.ID, accounts.UserChange{Name: &name2, Password: &pw2, ClientID: "app"}); err != nil {
		t.Fatal(err)
	}
	f.obs.wantOne(t, "manage", events.GuestUpgraded, guests[1].User.ID, map[string]any{"method": "password"})

	// passkey.
	pk := newPasskeys(t, f.fixture)
	a := webauthntest.New(t, issuer)
	reg, _ := register(t, pk, a, identityOf(t, f.fixture, guests[2]), "laptop")
	if !reg.Upgraded {
		t.Fatal("the passkey did not upgrade the guest")
	}
	var up []events.Event
	for _, ev := range f.obs.take() {
		if ev.Type == events.GuestUpgraded {
			up = append(up, ev)
		}
	}
	if len(up) != 1 || up[0].Data["method"] != "passkey" {
		t.Fatalf("passkey upgrade reported %+v", up)
	}

	// email: a guest with a verified address sets a password from a link.
	gid := identityOf(t, f.fixture, guests[3])
	f.verified(t, gid, "guest@example.test")
	if err := f.svc.ForgotPassword(bg, accounts.EmailLinkRequest{Email: "guest@example.test", LinkBase: linkBase, ClientIP: "10.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	tok := f.oneLink(t, accounts.MailReset, "guest@example.test", accounts.LinkReset)
	f.obs.take()
	if _, err := f.svc.ResetPassword(bg, nil, accounts.ResetRequest{Handle: tok, Password: "a long password", Issuer: iss, ClientIP: "10.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	up = nil
	for _, ev := range f.obs.take() {
		if ev.Type == events.GuestUpgraded {
			up = append(up, ev)
		}
	}
	if len(up) != 1 || up[0].Data["method"] != "email" {
		t.Fatalf("email upgrade reported %+v", up)
	}

	// A deletion.
	if _, err := f.svc.ManageDelete(bg, guests[0].User.ID, "app"); err != nil {
		t.Fatal(err)
	}

	wantDaily(t, "creation day", daily(t, f.store, "2030-01-01"), map[string]int64{
		storage.SeriesGuestsCreated: 4, storage.SeriesCohortUpgraded: 4,
	})
	// 90 s (and a little more for the later ones, none past 128 s) from
	// creation to upgrade: bucket floor(2·log2(90)) = 12 or 13.
	day2 := daily(t, f.store, "2030-01-02")
	ttu := day2[storage.SeriesTimeToUpgrade+"12"] + day2[storage.SeriesTimeToUpgrade+"13"]
	delete(day2, storage.SeriesTimeToUpgrade+"12")
	delete(day2, storage.SeriesTimeToUpgrade+"13")
	if ttu != 4 {
		t.Fatalf("time-to-upgrade counts: %d, want 4", ttu)
	}
	wantDaily(t, "upgrade day", day2, map[string]int64{
		storage.SeriesUpgraded + "password": 2, storage.SeriesUpgraded + "passkey": 1, storage.SeriesUpgraded + "email": 1,
		storage.SeriesDeleted: 1,
	})
}

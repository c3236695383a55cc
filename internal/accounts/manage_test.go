package accounts_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// A managing client renames a guest (an upgrade, keeping its id, with
// guest.upgraded naming the client), sets its display name and password
// without an old one, and replaces the password later, which ends the
// user's sessions.
func TestManageUpdate(t *testing.T) {
	t.Parallel()
	o := &observed{}
	cfg := limitsConfig()
	cfg.Observer = o.observe
	cfg.ReservedNames = accounts.DefaultReservedNames
	f := newFixture(t, cfg)
	issued, _ := f.guest(t)
	o.take()
	g := issued.User

	u, changed, err := f.svc.ManageUpdate(bg, g.ID, accounts.UserChange{Name: ptr(g.Name), DisplayName: ptr(""), ClientID: "backend"})
	if err != nil || changed || u.Tag != model.TagGuest || len(o.take()) != 0 {
		t.Fatalf("no change: %+v %v %v", u, changed, err)
	}
	u, changed, err = f.svc.ManageUpdate(bg, g.ID, accounts.UserChange{Name: ptr(" rosa "), DisplayName: ptr("Rosa"), ClientID: "backend", ClientIP: "10.0.0.1"})
	if err != nil || !changed || u.ID != g.ID || u.Name != "rosa" || u.DisplayName != "Rosa" || u.Tag != model.TagNormal {
		t.Fatalf("rename: %+v %v %v", u, changed, err)
	}
	ev := o.wantOne(t, "rename", events.GuestUpgraded, g.ID, map[string]any{"old_name": g.Name, "new_name": "rosa"})
	if ev.ClientID != "backend" {
		t.Fatalf("upgrade reported for client %q", ev.ClientID)
	}
	// The guest's session survives its upgrade.
	if _, err := f.svc.Authenticate(bg, issued.Tokens.AccessToken, issuer); err != nil {
		t.Fatalf("session after the upgrade: %v", err)
	}
	if _, _, err := f.svc.ManageUpdate(bg, g.ID, accounts.UserChange{Password: ptr("first-password"), ClientID: "backend"}); err != nil {
		t.Fatal(err)
	}
	if len(o.take()) != 0 {
		t.Fatal("a first password reported an event")
	}
	if _, err := f.svc.Authenticate(bg, issued.Tokens.AccessToken, issuer); err != nil {
		t.Fatalf("a first password ended the session: %v", err)
	}
	// Replacing it: a wrong old password is refused, a right one or none
	// replaces it and ends every session.
	_, _, err = f.svc.ManageUpdate(bg, g.ID, accounts.UserChange{Password: ptr("second-password"), OldPassword: ptr("wrong-password"), ClientID: "backend"})
	wantCode(t, err, accounts.CodeWrongPassword)
	if _, _, err := f.svc.ManageUpdate(bg, g.ID, accounts.UserChange{Password: ptr("second-password"), OldPassword: ptr("first-password"), ClientID: "backend"}); err != nil {
		t.Fatal(err)
	}
	o.wantOne(t, "password replaced", events.SessionRevoked, g.ID, map[string]any{"cause": "password_changed", "sessions": 1})
	id, err := f.svc.Authenticate(bg, issued.Tokens.AccessToken, issuer)
	wantSessionEnded(t, id, err)
	if _, err := f.svc.PasswordSignIn(bg, issuer, "app", "rosa", "second-password", "10.0.0.2"); err != nil {
		t.Fatalf("sign-in with the new password: %v", err)
	}

	// The rules of names and passwords hold for a managing client too.
	other, _ := f.guest(t)
	for _, c := range []struct {
		ch   accounts.UserChange
		code string
	}{
		{accounts.UserChange{Name: ptr("ROSA")}, accounts.CodeNameTaken},
		{accounts.UserChange{Name: ptr("admin")}, accounts.CodeInvalidName},
		{accounts.UserChange{Name: ptr("guest_x")}, accounts.CodeInvalidName},
		{accounts.UserChange{Name: ptr("a b")}, accounts.CodeInvalidName},
		{accounts.UserChange{Password: ptr("short")}, accounts.CodeInvalidPassword},
		{accounts.UserChange{DisplayName: ptr("a\x00b")}, accounts.CodeInvalidRequest},
	} {
		_, _, err := f.svc.ManageUpdate(bg, other.User.ID, c.ch)
		wantCode(t, err, c.code)
	}
	if _, _, err := f.svc.ManageUpdate(bg, "no-such-user", accounts.UserChange{Name: ptr("x-name")}); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

// Renames by a managing client spend the user's name-change budget (not
// the client address's: every user's renames come from the app's server).
func TestManageUpdateNameBudget(t *testing.T) {
	t.Parallel()
	cfg := limitsConfig()
	cfg.NameUserLimit = accounts.Limit{Burst: 2, Interval: time.Hour}
	cfg.NameIPLimit = accounts.Limit{Burst: 1, Interval: time.Hour}
	f := newFixture(t, cfg)
	a, _ := f.guest(t)
	b, _ := f.guest(t)
	for i, n := range []string{"first-a", "second-a"} {
		if _, _, err := f.svc.ManageUpdate(bg, a.User.ID, accounts.UserChange{Name: ptr(n), ClientIP: "app-server"}); err != nil {
			t.Fatalf("rename %d: %v", i, err)
		}
	}
	_, _, err := f.svc.ManageUpdate(bg, a.User.ID, accounts.UserChange{Name: ptr("third-a"), ClientIP: "app-server"})
	var te *accounts.ThrottledError
	if !errors.As(err, &te) || te.Limit != accounts.LimitName {
		t.Fatalf("third rename: %v", err)
	}
	if _, _, err := f.svc.ManageUpdate(bg, b.User.ID, accounts.UserChange{Name: ptr("first-b"), ClientIP: "app-server"}); err != nil {
		t.Fatalf("another user's rename from the same address: %v", err)
	}
}

// Sixty concurrent password changes of one user through a managing client
// hash no more than the account's hash budget allows; the rest are
// refused before any hashing.
func TestManagePasswordsBounded(t *testing.T) {
	t.Parallel()
	cfg := limitsConfig()
	cfg.AccountHashLimit = accounts.Limit{Burst: 5, Interval: time.Hour}
	f := newFixture(t, cfg)
	g, _ := f.guest(t)
	hashes := accounts.CountNewHashes(f.svc)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, throttled := 0, 0
	for range 60 {
		wg.Go(func() {
			_, _, err := f.svc.ManageUpdate(bg, g.User.ID, accounts.UserChange{Password: ptr("a-new-password"), ClientIP: "app-server"})
			var te *accounts.ThrottledError
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.As(err, &te):
				throttled++
			default:
				var ae *accounts.Error
				if !errors.As(err, &ae) || ae.Code != accounts.CodeConflict {
					t.Errorf("change: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if n := hashes.Load(); n > 5 || ok == 0 || throttled < 55 {
		t.Fatalf("%d hashes, %d changes, %d throttled; want at most 5 hashes", n, ok, throttled)
	}
}

// ManageCreate makes a named user (kept without a password, so it does
// not expire like a guest), reporting user.created for the client; the
// name rules hold. ManageDelete reports user.deleted for the client.
func TestManageCreateAndDelete(t *testing.T) {
	t.Parallel()
	o := &observed{}
	cfg := limitsConfig()
	cfg.Observer = o.observe
	cfg.ReservedNames = accounts.DefaultReservedNames
	f := newFixture(t, cfg)
	u, err := f.svc.ManageCreate(bg, "nina", "Nina", ptr("nina-password"), "backend", "app-server")
	if err != nil || u.Tag != model.TagNormal || u.Kept || u.PasswordHash == "" || u.DisplayName != "Nina" {
		t.Fatalf("create: %+v %v", u, err)
	}
	ev := o.wantOne(t, "create", events.UserCreated, u.ID, map[string]any{"name": "nina", "via": "api"})
	if ev.ClientID != "backend" {
		t.Fatalf("user.created for client %q", ev.ClientID)
	}
	if _, err := f.svc.PasswordSignIn(bg, issuer, "app", "nina", "nina-password", "10.0.0.3"); err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	bare, err := f.svc.ManageCreate(bg, "omar", "", nil, "backend", "app-server")
	if err != nil || !bare.Kept || bare.PasswordHash != "" {
		t.Fatalf("create without a password: %+v %v", bare, err)
	}
	o.take()
	for _, name := range []string{"NINA", "root", "guest_1", "x"} {
		_, err := f.svc.ManageCreate(bg, name, "", nil, "backend", "app-server")
		var ae *accounts.Error
		if !errors.As(err, &ae) {
			t.Fatalf("create %q: %v", name, err)
		}
	}
	if n, err := f.svc.CountUsers(bg, ""); err != nil || n != 2 {
		t.Fatalf("count: %d %v", n, err)
	}
	if _, err := f.svc.ManageDelete(bg, u.ID, "backend"); err != nil {
		t.Fatal(err)
	}
	ev = o.wantOne(t, "delete", events.UserDeleted, u.ID, map[string]any{"name": "nina", "cause": "api"})
	if ev.ClientID != "backend" {
		t.Fatalf("user.deleted for client %q", ev.ClientID)
	}
	if _, err := f.svc.ManageDelete(bg, u.ID, "backend"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("deleted twice: %v", err)
	}
}

package accounts_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Users delete their own account: a guest with its session alone, a user
// with a password only with it. The user, its sessions and its device go;
// every token stops at once; user.deleted is reported with cause self.
func TestDeleteAccount(t *testing.T) {
	t.Parallel()
	var o observed
	cfg := limitsConfig()
	cfg.Observer = o.observe
	f := newFixture(t, cfg)

	g, id := f.guest(t)
	o.take()
	if err := f.svc.DeleteAccount(bg, id, "", "192.0.2.1"); err != nil {
		t.Fatalf("guest: %v", err)
	}
	o.wantOne(t, "guest deleted", events.UserDeleted, g.User.ID, map[string]any{"cause": accounts.CauseSelf, "tag": model.TagGuest})
	gone, err := f.svc.Authenticate(bg, g.Tokens.AccessToken, issuer)
	wantSessionEnded(t, gone, err)
	if _, err := f.svc.Refresh(bg, issuer, "app", g.Tokens.RefreshToken); err == nil {
		t.Fatal("the deleted guest's refresh token still works")
	}
	// Deleting it again (a second tab) is no error and reports nothing.
	if err := f.svc.DeleteAccount(bg, id, "", "192.0.2.1"); err != nil {
		t.Fatalf("again: %v", err)
	}
	if evs := o.take(); len(evs) != 0 {
		t.Fatalf("a second deletion reported %+v", evs)
	}

	m := f.member(t, "marta", "marta's password")
	o.take()
	for _, pw := range []string{"", "wrong password"} {
		wantCode(t, f.svc.DeleteAccount(bg, m, pw, "192.0.2.1"), accounts.CodeWrongPassword)
		if _, err := f.svc.Authenticate(bg, f.signIn(t, "marta", "marta's password", "192.0.2.1", "").Tokens.AccessToken, issuer); err != nil {
			t.Fatalf("after a refused deletion (%q): %v", pw, err)
		}
	}
	if evs := o.take(); len(evs) != 0 {
		t.Fatalf("refused deletions reported %+v", evs)
	}
	if err := f.svc.DeleteAccount(bg, m, "marta's password", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	o.wantOne(t, "member deleted", events.UserDeleted, m.User.ID, map[string]any{"cause": accounts.CauseSelf, "name": "marta", "tag": model.TagNormal})
	if err := f.trySignIn("marta", "marta's password", "192.0.2.1", ""); err == nil {
		t.Fatal("the deleted user signs in")
	}
	// The name is free again.
	f.member(t, "marta", "another password")
}

// Password checks of deletions are budgeted before the hash, like those of
// a password change: 20 wrong passwords at once from a stolen session hash
// only the session's burst, and the account is not deleted.
func TestDeleteAccountBudget(t *testing.T) {
	cfg := limitsConfig()
	cfg.DeviceLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
	f := newFixture(t, cfg)
	id := f.member(t, "nadia", "nadia's password")
	gate := newHashGate(f)
	errs := gate.burst(20, func(i int) error {
		return f.svc.DeleteAccount(bg, id, fmt.Sprintf("guess-%02d", i), "203.0.113.2")
	})()
	if n := gate.started.Load(); n != 3 {
		t.Fatalf("%d of 20 concurrent deletion guesses were hashed, want 3", n)
	}
	throttled := 0
	for _, err := range errs {
		if errors.As(err, new(*accounts.ThrottledError)) {
			throttled++
		} else {
			wantCode(t, err, accounts.CodeWrongPassword)
		}
	}
	if throttled != 17 {
		t.Fatalf("%d throttled, want 17", throttled)
	}
	// The right password is throttled too now: the budget is the session's.
	err := f.svc.DeleteAccount(bg, id, "nadia's password", "203.0.113.2")
	wantThrottled(t, err, accounts.LimitSignIn)
	f.authenticate(t, f.signIn(t, "nadia", "nadia's password", "192.0.2.1", "").Tokens.AccessToken)
}

// CheckNewAccount finds every fault of a sign-up form at once, before any
// store work; the first is what errors.As finds.
func TestCheckNewAccount(t *testing.T) {
	t.Parallel()
	cfg := defaultConfig()
	cfg.ReservedNames = accounts.DefaultReservedNames
	f := newFixture(t, cfg)
	for _, c := range []struct {
		name, password string
		codes          []string
	}{
		{"alice", "long enough", nil},
		{"  alice ", "long enough", nil},
		{"admin", "short", []string{accounts.CodeInvalidName, accounts.CodeInvalidPassword}},
		{"Admin", "long enough", []string{accounts.CodeInvalidName}},
		{"guest_me", "long enough", []string{accounts.CodeInvalidName}},
		{"a", "", []string{accounts.CodeInvalidName, accounts.CodeInvalidPassword}},
		{"bob!", "long enough", []string{accounts.CodeInvalidName}},
		{"bob", "x", []string{accounts.CodeInvalidPassword}},
	} {
		err := f.svc.CheckNewAccount(c.name, c.password)
		if c.codes == nil {
			if err != nil {
				t.Errorf("%q/%q: %v", c.name, c.password, err)
			}
			continue
		}
		var rs accounts.FieldErrors
		if !errors.As(err, &rs) || len(rs) != len(c.codes) {
			t.Errorf("%q/%q: %v, want %v", c.name, c.password, err, c.codes)
			continue
		}
		for i, r := range rs {
			if r.Code != c.codes[i] || r.Description == "" {
				t.Errorf("%q/%q: refusal %d is %v, want %s", c.name, c.password, i, r, c.codes[i])
			}
		}
		var first *accounts.Error
		if !errors.As(err, &first) || first != rs[0] {
			t.Errorf("%q/%q: errors.As found %v, want the first refusal", c.name, c.password, first)
		}
	}
	var rs accounts.FieldErrors
	errors.As(f.svc.CheckNewAccount("admin", "short"), &rs)
	if rs[0].Description != `The username "admin" is reserved.` || rs[1].Description != fmt.Sprintf("A password must be %d to %d characters.", accounts.MinPasswordLength, accounts.MaxPasswordLength) {
		t.Fatalf("messages %q", rs)
	}
}

package accounts_test

import (
	"context"
	"errors"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// failingDelete is the real store, except that ending the session named
// fail answers ErrUnavailable, as a store out of reach does.
type failingDelete struct {
	*countingStore
	fail string
}

func (s *failingDelete) DeleteSession(ctx context.Context, id string, ev storage.Events) error {
	if id == s.fail {
		return model.ErrUnavailable
	}
	return s.countingStore.DeleteSession(ctx, id, ev)
}

// A rotation whose old session cannot be ended changes nothing: the new
// session is removed again, the browser keeps the one it had, and the
// caller gets the error (so it raises no privilege).
func TestRotationUndoneWhenOldSessionStays(t *testing.T) {
	f := newFixture(t, browserConfig())
	login, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	prev, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	if err != nil {
		t.Fatal(err)
	}
	st := &failingDelete{countingStore: f.store, fail: login.Session.ID}
	keys, err := tokens.LoadKeyring(bg, st)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := accounts.New(bg, st, keys, browserConfig(), f.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	name, pw := "olive", "correct horse battery"
	got, _, err := svc.UpdateBrowserProfile(bg, prev, accounts.ProfileUpdate{Name: &name, Password: &pw, ClientIP: "192.0.2.1", Issuer: issuer})
	if !errors.Is(err, model.ErrUnavailable) || got != nil {
		t.Fatalf("UpdateBrowserProfile = %+v, %v; want the outage, no new session", got, err)
	}
	if _, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer); err != nil {
		t.Fatalf("the browser's session: %v", err)
	}
	u, err := f.store.GetUser(bg, login.User.ID)
	if err != nil || !u.IsAnonymous() || u.PasswordHash != "" {
		t.Fatalf("the guest was upgraded without a new session: %+v %v", u, err)
	}
	// No other session of the guest is left (the new one was removed).
	if n, err := f.store.DeleteUserSessions(bg, login.User.ID, login.Session.ID, nil); err != nil || n != 0 {
		t.Fatalf("%d sessions besides the browser's were left (%v)", n, err)
	}
}

// A password change from a browser replaces its session (no new token set:
// a browser holds none) and ends the user's other sessions; the new
// session was proved by the password just given.
func TestBrowserPasswordChangeRotates(t *testing.T) {
	f := newFixture(t, browserConfig())
	first, err := f.svc.RegisterBrowser(bg, issuer, "paula", "correct horse battery", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.svc.BrowserSignIn(bg, nil, issuer, "paula", "correct horse battery", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := f.svc.BrowserAuthenticate(bg, first.Handle, issuer)
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(accounts.BrowserSlideEvery)
	old, pw := "correct horse battery", "another good password"
	login, res, err := f.svc.UpdateBrowserProfile(bg, id, accounts.ProfileUpdate{OldPassword: &old, Password: &pw, ClientIP: "192.0.2.1", Issuer: issuer})
	if err != nil || login == nil || res.Tokens != nil || res.EndedSessions != 1 {
		t.Fatalf("password change: %+v %+v %v", login, res, err)
	}
	if !login.Session.AuthTime.Equal(f.clock.Now()) || login.Session.Issuer != issuer {
		t.Fatalf("new session %+v", login.Session)
	}
	for _, h := range []string{first.Handle, other.Handle} {
		_, _, err := f.svc.BrowserAuthenticate(bg, h, issuer)
		wantInvalid(t, err, accounts.ReasonSessionEnded)
	}
	if got, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer); err != nil || got.User.ID != first.User.ID {
		t.Fatalf("new handle: %v %v", got, err)
	}
	// A rename of a registered user is no privilege change: same session.
	name := "paula2"
	now, _, _ := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	again, _, err := f.svc.UpdateBrowserProfile(bg, now, accounts.ProfileUpdate{Name: &name, OldPassword: &pw, ClientIP: "192.0.2.1", Issuer: issuer})
	if err != nil || again != nil {
		t.Fatalf("rename: %+v %v", again, err)
	}
}

package accounts_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/webauthntest"
)

func newPasskeys(t *testing.T, f *fixture) *accounts.Passkeys {
	t.Helper()
	pk, err := accounts.NewPasskeys(f.svc, f.store, accounts.PasskeyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func identityOf(t *testing.T, f *fixture, login *accounts.BrowserLogin) *accounts.Identity {
	t.Helper()
	id, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	if err != nil {
		t.Fatalf("authenticate %s: %v", login.Handle, err)
	}
	return id
}

// register saves a passkey for the browser user of login.
func register(t *testing.T, pk *accounts.Passkeys, a *webauthntest.Authenticator, id *accounts.Identity, name string) (*accounts.PasskeyRegistration, string) {
	t.Helper()
	opts, handle, err := pk.BeginRegistration(bg, id, issuer, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	resp, credID := a.Create(opts)
	reg, err := pk.FinishRegistration(bg, id, issuer, handle, resp, name)
	if err != nil {
		t.Fatalf("FinishRegistration: %v", err)
	}
	return reg, credID
}

// A guest saves a passkey: a member with the same id, no password, on a
// new session; signed out, a later guest signs in with the passkey on
// another node and is merged into the member; the counter is kept.
func TestPasskeyJourney(t *testing.T) {
	t.Parallel()
	f := newFixture(t, browserConfig())
	pk := newPasskeys(t, f)
	a := webauthntest.New(t, issuer)
	guest, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	gid := identityOf(t, f, guest)
	reg, credID := register(t, pk, a, gid, "  my laptop ")
	u := reg.User
	if !reg.Upgraded || u.ID != guest.User.ID || u.Tag != model.TagNormal || u.PasswordHash != "" || u.Passkeys != 1 || u.Ephemeral() {
		t.Fatalf("after registration: %+v (upgraded %v); want the guest's id as a member with one passkey", u, reg.Upgraded)
	}
	if reg.Passkey.Name != "my laptop" || reg.Passkey.ID != credID {
		t.Fatalf("passkey %+v", reg.Passkey)
	}
	// A new session; the old handle is dead.
	if reg.Login.Handle == guest.Handle || reg.Login.Session.ID == guest.Session.ID {
		t.Fatal("the browser kept its session across the upgrade")
	}
	if _, _, err := f.svc.BrowserAuthenticate(bg, guest.Handle, issuer); err == nil {
		t.Fatal("the guest's old handle still works after the upgrade")
	}
	member := identityOf(t, f, reg.Login)
	if member.User.ID != u.ID || member.User.IsAnonymous() {
		t.Fatalf("new session's user: %+v", member.User)
	}
	if err := f.svc.EndBrowserSession(bg, member); err != nil {
		t.Fatal(err)
	}

	// Another node (another Service on the same store) finishes what this
	// one began.
	other := newFixtureOn(t, f.store, browserConfig())
	pk2 := newPasskeys(t, other)
	guest2, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	g2 := identityOf(t, f, guest2)
	opts, handle, err := pk.BeginSignIn(bg, issuer, "192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	resp := a.Get(opts, credID, 1)
	login, err := pk2.FinishSignIn(bg, g2, issuer, handle, resp)
	if err != nil {
		t.Fatalf("FinishSignIn: %v", err)
	}
	if login.User.ID != u.ID || login.Session.MergedFrom != guest2.User.ID {
		t.Fatalf("signed in as %s (merged from %q); want %s merged from the guest %s", login.User.ID, login.Session.MergedFrom, u.ID, guest2.User.ID)
	}
	if _, _, err := f.svc.BrowserAuthenticate(bg, guest2.Handle, issuer); err == nil {
		t.Fatal("the merged guest's handle still works")
	}
	stored, err := f.store.GetPasskey(bg, credID)
	if err != nil || !stored.LastUsedAt.Equal(f.clock.Now()) {
		t.Fatalf("stored passkey after the sign-in: %+v, %v", stored, err)
	}
	var c struct {
		Credential struct {
			Flags struct {
				BackupEligible bool `json:"backupEligible"`
				BackupState    bool `json:"backupState"`
			} `json:"flags"`
			Authenticator struct {
				SignCount uint32 `json:"signCount"`
			} `json:"authenticator"`
		} `json:"credential"`
		RawFlags uint8 `json:"raw_flags"`
	}
	if err := json.Unmarshal(stored.Credential, &c); err != nil {
		t.Fatal(err)
	}
	if c.Credential.Authenticator.SignCount != 2 || !c.Credential.Flags.BackupEligible || !c.Credential.Flags.BackupState || c.RawFlags&(webauthntest.FlagBE|webauthntest.FlagBS) != webauthntest.FlagBE|webauthntest.FlagBS {
		t.Fatalf("stored credential %s: want the counter 2 and both backup flags", stored.Credential)
	}

	// The same assertion again: the ceremony is spent.
	_, err = pk.FinishSignIn(bg, nil, issuer, handle, resp)
	wantCode(t, err, accounts.CodeInvalidGrant)
	// An old assertion under a new ceremony: another challenge.
	_, handle2, err := pk.BeginSignIn(bg, issuer, "192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	_, err = pk.FinishSignIn(bg, nil, issuer, handle2, resp)
	wantCode(t, err, accounts.CodeInvalidGrant)
	// A counter that does not advance past the stored one: a clone.
	opts3, handle3, _ := pk.BeginSignIn(bg, issuer, "192.0.2.2")
	a.SetCount(credID, 1)
	_, err = pk.FinishSignIn(bg, nil, issuer, handle3, a.Get(opts3, credID, 0))
	wantCode(t, err, accounts.CodeInvalidGrant)
	// Under another issuer of the same origin (sites sharing a store),
	// the ceremony is not accepted.
	opts4, handle4, _ := pk.BeginSignIn(bg, issuer, "192.0.2.2")
	_, err = pk.FinishSignIn(bg, nil, issuer+"/site2", handle4, a.Get(opts4, credID, 5))
	wantCode(t, err, accounts.CodeInvalidGrant)
}

// Registration is finished only by the session that began it, from the
// issuer's origin, once.
func TestPasskeyRegistrationRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, browserConfig())
	pk := newPasskeys(t, f)
	a := webauthntest.New(t, issuer)
	g1, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	g2, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	id1, id2 := identityOf(t, f, g1), identityOf(t, f, g2)

	opts, handle, err := pk.BeginRegistration(bg, id1, issuer, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := a.Create(opts)
	_, err = pk.FinishRegistration(bg, id2, issuer, handle, resp, "")
	wantCode(t, err, accounts.CodeInvalidGrant)
	// Taken by that attempt: the right session cannot use it either.
	_, err = pk.FinishRegistration(bg, id1, issuer, handle, resp, "")
	wantCode(t, err, accounts.CodeInvalidGrant)
	// Nor another session of the same user.
	opts, handle, _ = pk.BeginRegistration(bg, id1, issuer, "192.0.2.1")
	resp, _ = a.Create(opts)
	rot, err := f.svc.RotateBrowserSession(bg, id1, g1.User, issuer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pk.FinishRegistration(bg, identityOf(t, f, rot), issuer, handle, resp, "")
	wantCode(t, err, accounts.CodeInvalidGrant)

	evil := webauthntest.New(t, "https://evil.example.net")
	opts, handle, _ = pk.BeginRegistration(bg, id1, issuer, "192.0.2.1")
	resp, _ = evil.Create(opts)
	_, err = pk.FinishRegistration(bg, id1, issuer, handle, resp, "")
	wantCode(t, err, accounts.CodeInvalidGrant)

	opts, handle, _ = pk.BeginRegistration(bg, id1, issuer, "192.0.2.1")
	resp, _ = a.Create(opts)
	_, err = pk.FinishRegistration(bg, id1, issuer, handle, resp, "a\x00b")
	wantCode(t, err, accounts.CodeInvalidRequest)
	_, err = pk.FinishRegistration(bg, id1, issuer, "not-a-handle", resp, "")
	wantCode(t, err, accounts.CodeInvalidGrant)
	if u, _ := f.store.GetUser(bg, g1.User.ID); u.Tag != model.TagGuest || u.Passkeys != 0 {
		t.Fatalf("a refused registration changed the guest: %+v", u)
	}
}

// Members list, rename and remove passkeys; the last way to sign in
// stays.
func TestPasskeyManage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, browserConfig())
	pk := newPasskeys(t, f)
	a := webauthntest.New(t, issuer)
	g, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	reg, first := register(t, pk, a, identityOf(t, f, g), "one")
	id := identityOf(t, f, reg.Login)
	err := pk.Remove(bg, id, first)
	wantCode(t, err, accounts.CodeLastSignIn)
	f.clock.Advance(time.Minute) // listed oldest first
	reg2, second := register(t, pk, a, id, "two")
	if reg2.Upgraded {
		t.Fatal("a member's second passkey reported an upgrade")
	}
	id = identityOf(t, f, reg2.Login)
	if err := pk.Rename(bg, id, second, "phone"); err != nil {
		t.Fatal(err)
	}
	list, err := pk.List(bg, id)
	if err != nil || len(list) != 2 || list[0].ID != first || list[1].Name != "phone" {
		t.Fatalf("List: %+v, %v", list, err)
	}
	// Another user cannot touch them.
	o, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	oid := identityOf(t, f, o)
	wantCode(t, pk.Rename(bg, oid, first, "mine"), accounts.CodeInvalidRequest)
	wantCode(t, pk.Remove(bg, oid, first), accounts.CodeInvalidRequest)
	if err := pk.Remove(bg, id, first); err != nil {
		t.Fatal(err)
	}
	wantCode(t, pk.Remove(bg, id, second), accounts.CodeLastSignIn)
	if list, _ := pk.List(bg, id); len(list) != 1 || list[0].ID != second {
		t.Fatalf("after removal: %+v", list)
	}
}

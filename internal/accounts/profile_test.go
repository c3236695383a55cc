package accounts_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// named makes a guest and upgrades it to name with password (none when "").
func (f *fixture) named(t *testing.T, name, password string) (*accounts.Issued, *accounts.Identity) {
	t.Helper()
	g, id := f.guest(t)
	upd := accounts.ProfileUpdate{Name: ptr(name), Issuer: issuer}
	if password != "" {
		upd.Password = ptr(password)
	}
	if _, err := f.svc.UpdateProfile(bg, id, upd); err != nil {
		t.Fatal(err)
	}
	return g, f.authenticate(t, g.Tokens.AccessToken)
}

func TestTakenNameCostsNoPasswordHash(t *testing.T) {
	f := newFixture(t, defaultConfig())
	hashes := accounts.CountNewHashes(f.svc)
	f.named(t, "taken", "")
	const n = 20
	ids := make([]*accounts.Identity, n)
	for i := range ids {
		_, ids[i] = f.guest(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range ids {
		wg.Go(func() {
			_, errs[i] = f.svc.UpdateProfile(bg, ids[i], accounts.ProfileUpdate{Name: ptr("TAKEN"), Password: ptr("long enough pw")})
		})
	}
	wg.Wait()
	for _, err := range errs {
		wantCode(t, err, accounts.CodeNameTaken)
	}
	if got := hashes.Load(); got != 0 {
		t.Fatalf("%d password hashes spent on a taken name", got)
	}
	// The counter does see hashes: a free name costs one.
	if _, err := f.svc.UpdateProfile(bg, ids[0], accounts.ProfileUpdate{Name: ptr("free"), Password: ptr("long enough pw")}); err != nil || hashes.Load() != 1 {
		t.Fatalf("free name: %v, %d hashes", err, hashes.Load())
	}
}

func TestNameChangesAreThrottled(t *testing.T) {
	cfg := defaultConfig()
	cfg.NameUserLimit = accounts.Limit{Burst: 3, Interval: time.Minute}
	cfg.NameIPLimit = accounts.Limit{Burst: 5, Interval: time.Minute}
	f := newFixture(t, cfg)
	f.named(t, "taken", "") // no ClientIP: the "" key, unrelated to the IPs below
	rename := func(id *accounts.Identity, name, ip string) error {
		_, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr(name), ClientIP: ip})
		return err
	}

	// Per user: probes of taken names count like successes.
	_, a := f.guest(t)
	for range 3 {
		wantCode(t, rename(a, "taken", "10.0.0.1"), accounts.CodeNameTaken)
	}
	te := wantThrottled(t, rename(a, "free-name", "10.0.0.2"), accounts.LimitName)
	if te.RetryAfter > time.Minute {
		t.Fatalf("retry after %v", te.RetryAfter)
	}
	if u, _ := f.store.GetUser(bg, a.User.ID); u.Name != a.User.Name || u.Tag != model.TagGuest {
		t.Fatalf("a throttled rename changed the user: %+v", u)
	}
	// Invalid names and other fields cost nothing and are not throttled.
	wantCode(t, rename(a, "-bad", "10.0.0.1"), accounts.CodeInvalidName)
	if _, err := f.svc.UpdateProfile(bg, a, accounts.ProfileUpdate{DisplayName: ptr("Ann"), Name: ptr(a.User.Name), ClientIP: "10.0.0.1"}); err != nil {
		t.Fatalf("display name while throttled: %v", err)
	}
	f.clock.Advance(time.Minute)
	if err := rename(a, "free-name", "10.0.0.2"); err != nil {
		t.Fatalf("after the interval: %v", err)
	}

	// Per IP: several users from one address (10.0.0.1 spent 3 above and
	// got 1 back in the minute: 3 left).
	_, b := f.guest(t)
	_, c := f.guest(t)
	for range 3 {
		wantCode(t, rename(b, "taken", "10.0.0.1"), accounts.CodeNameTaken)
	}
	wantThrottled(t, rename(c, "carl", "10.0.0.1"), accounts.LimitName)
	if err := rename(c, "carl", "10.0.0.9"); err != nil {
		t.Fatalf("another IP: %v", err)
	}
}

func TestReservedNames(t *testing.T) {
	cfg := defaultConfig()
	cfg.ReservedNames = append([]string{"Acme"}, accounts.DefaultReservedNames...)
	f := newFixture(t, cfg)
	g, id := f.guest(t)
	for _, name := range []string{"admin", "ADMIN", " Root ", "acme", "Administrator", "support", "no-reply"} {
		_, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr(name)})
		wantCode(t, err, accounts.CodeInvalidName)
	}
	if u, _ := f.store.GetUser(bg, id.User.ID); u.Tag != model.TagGuest {
		t.Fatalf("a reserved name changed the user: %+v", u)
	}
	if _, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr("admin2")}); err != nil {
		t.Fatalf("a name containing a reserved one: %v", err)
	}
	// A user who already has a reserved name (set by an operator) may
	// change its case: it claims nothing new.
	if _, err := f.store.UpdateUser(bg, id.User.ID, func(u *model.User) error { u.Name = "support"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	id = f.authenticate(t, g.Tokens.AccessToken)
	if res, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr("Support")}); err != nil || res.User.Name != "Support" {
		t.Fatalf("case change of a reserved own name: %+v %v", res, err)
	}
}

func TestRenameNeedsOldPassword(t *testing.T) {
	f := newFixture(t, defaultConfig())
	g, id := f.named(t, "carol", "first-password")
	for _, old := range []*string{nil, ptr(""), ptr("not-it-at-all")} {
		_, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr("mallory"), OldPassword: old})
		wantCode(t, err, accounts.CodeWrongPassword)
	}
	if u, _ := f.store.GetUser(bg, g.User.ID); u.Name != "carol" {
		t.Fatalf("renamed without the password: %+v", u)
	}
	// A display name needs no password; the right one allows the rename.
	if _, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{DisplayName: ptr("Carol")}); err != nil {
		t.Fatalf("display name: %v", err)
	}
	res, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr("caroline"), OldPassword: ptr("first-password")})
	if err != nil || res.User.Name != "caroline" || res.Tokens != nil || res.EndedSessions != 0 {
		t.Fatalf("rename with the password: %+v %v", res, err)
	}
	// A passwordless user (and a guest) renames with its token alone.
	_, p := f.named(t, "pat", "")
	if _, err := f.svc.UpdateProfile(bg, p, accounts.ProfileUpdate{Name: ptr("patty")}); err != nil {
		t.Fatalf("passwordless rename: %v", err)
	}
}

func TestPasswordChangeReissuesCallerTokens(t *testing.T) {
	f := newFixture(t, defaultConfig())
	g, id := f.named(t, "dana", "first-password")
	// Setting a first password (the upgrade above) re-issues nothing: the
	// guest's refresh token still works.
	r, err := f.svc.Refresh(bg, issuer, "app", g.Tokens.RefreshToken)
	if err != nil {
		t.Fatalf("refresh after the upgrade: %v", err)
	}
	other, err := f.svc.PasswordSignIn(bg, issuer, "app", "dana", "first-password", "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	res, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("second-password"), OldPassword: ptr("first-password"), Issuer: issuer})
	if err != nil || res.EndedSessions != 1 || res.Tokens == nil {
		t.Fatalf("password change: %+v %v", res, err)
	}
	tok := res.Tokens
	if tok.AccessToken == "" || tok.IDToken == "" || tok.TokenType != "Bearer" || tok.RefreshToken == r.Tokens.RefreshToken {
		t.Fatalf("re-issued tokens: %+v", tok)
	}
	// Same session, re-authenticated now.
	nid := f.authenticate(t, tok.AccessToken)
	if nid.Session.ID != g.Session.ID || !nid.Session.AuthTime.Equal(f.clock.Now()) {
		t.Fatalf("new identity: session %s auth_time %v", nid.Session.ID, nid.Session.AuthTime)
	}
	// The caller's previous access token lives until it expires; the other
	// session's does not.
	f.authenticate(t, r.Tokens.AccessToken)
	got, err := f.svc.Authenticate(bg, other.Tokens.AccessToken, issuer)
	wantSessionEnded(t, got, err)
	// The new refresh token works; the old one is dead, and presenting it
	// is reuse, which ends the session.
	nr, err := f.svc.Refresh(bg, issuer, "app", tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh with the re-issued token: %v", err)
	}
	_, err = f.svc.Refresh(bg, issuer, "app", r.Tokens.RefreshToken)
	wantCode(t, err, accounts.CodeInvalidGrant)
	if !errors.Is(err, accounts.ErrRefreshReuse) {
		t.Fatalf("old refresh token: %v; want reuse", err)
	}
	got, err = f.svc.Authenticate(bg, nr.Tokens.AccessToken, issuer)
	wantSessionEnded(t, got, err)
}

func TestPasswordlessNormalUserExpiresLikeGuest(t *testing.T) {
	cfg := defaultConfig()
	cfg.SessionLifetime = 90 * 24 * time.Hour // idle 24h
	f, act := newTrackedFixture(t, cfg)
	opt := accounts.PruneOptions{IdleTTL: 30 * 24 * time.Hour, MaxListed: 10}

	henry, _ := f.named(t, "henry", "")            // name only: passwordless
	iris, _ := f.named(t, "iris", "iris-password") // a real account
	kate, _ := f.named(t, "kate", "")
	leo, leoID := f.named(t, "leo", "")
	mo, _ := f.named(t, "moe", "")
	if _, err := f.store.UpdateUser(bg, kate.User.ID, func(u *model.User) error { u.Kept = true; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	// A passwordless user cannot sign in with a password...
	_, err := f.svc.PasswordSignIn(bg, issuer, "app", "henry", "", "10.0.0.1")
	wantCode(t, err, accounts.CodeInvalidGrant)
	// ...so without a session (and no device key) it is an orphan.
	if err := f.store.DeleteSession(bg, mo.Session.ID, nil); err != nil {
		t.Fatal(err)
	}
	rep, err := accounts.Prune(bg, f.store, f.clock.Now(), opt, nil)
	if err != nil || rep.Count != 1 || rep.Users[0].UserID != mo.User.ID || rep.Users[0].Reason != accounts.PruneOrphan {
		t.Fatalf("orphan prune: %+v %v", rep, err)
	}
	// Setting a password later makes the account durable.
	if _, err := f.svc.UpdateProfile(bg, leoID, accounts.ProfileUpdate{Password: ptr("leo-password")}); err != nil {
		t.Fatal(err)
	}
	if err := act.Flush(bg); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(40 * 24 * time.Hour)
	rep, err = accounts.Prune(bg, f.store, f.clock.Now(), opt, nil)
	if err != nil || rep.Count != 1 || rep.Users[0].UserID != henry.User.ID || rep.Users[0].Reason != accounts.PruneIdle {
		t.Fatalf("idle prune: %+v %v", rep, err)
	}
	for _, u := range []*accounts.Issued{iris, kate, leo} {
		if _, err := f.store.GetUser(bg, u.User.ID); err != nil {
			t.Fatalf("%s was pruned: %v", u.User.Name, err)
		}
	}
}

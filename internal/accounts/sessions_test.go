package accounts_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

func ptr(s string) *string { return &s }

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var ae *accounts.Error
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("error = %v; want code %q", err, code)
	}
}

// authenticate checks an access token against the fixture's service.
func (f *fixture) authenticate(t *testing.T, at string) *accounts.Identity {
	t.Helper()
	id, err := f.svc.Authenticate(bg, at, issuer)
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	return id
}

func (f *fixture) guest(t *testing.T) (*accounts.Issued, *accounts.Identity) {
	t.Helper()
	g, err := f.svc.CreateGuest(bg, issuer, "app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	return g, f.authenticate(t, g.Tokens.AccessToken)
}

func TestRefreshRotatesAndDetectsReuse(t *testing.T) {
	f := newFixture(t, defaultConfig())
	g, _ := f.guest(t)

	r1, err := f.svc.Refresh(bg, issuer, "app", g.Tokens.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Tokens.RefreshToken == g.Tokens.RefreshToken || r1.User.ID != g.User.ID || r1.Session.ID != g.Session.ID {
		t.Fatalf("refresh did not rotate within the same session: %+v", r1)
	}
	if _, err := f.svc.Refresh(bg, issuer, "other-app", r1.Tokens.RefreshToken); err == nil {
		t.Fatal("another client's refresh was accepted")
	}
	// The first token again: reuse ends the session, so even the newest
	// refresh token and access token stop working.
	_, err = f.svc.Refresh(bg, issuer, "app", g.Tokens.RefreshToken)
	wantCode(t, err, accounts.CodeInvalidGrant)
	if !errors.Is(err, accounts.ErrRefreshReuse) {
		t.Fatalf("reuse not reported: %v", err)
	}
	if _, err := f.svc.Refresh(bg, issuer, "app", r1.Tokens.RefreshToken); err == nil {
		t.Fatal("refresh token of a revoked session still works")
	}
	id, err := f.svc.Authenticate(bg, r1.Tokens.AccessToken, issuer)
	wantSessionEnded(t, id, err)
}

func TestRefreshRejectsForgeries(t *testing.T) {
	f := newFixture(t, defaultConfig())
	g, _ := f.guest(t)
	sid, _, _ := strings.Cut(g.Tokens.RefreshToken, ".")
	for _, bad := range []string{"", "x", sid, sid + ".1.AAAA", sid + ".2." + strings.Split(g.Tokens.RefreshToken, ".")[2], sid + ".01." + strings.Split(g.Tokens.RefreshToken, ".")[2], g.Tokens.AccessToken} {
		_, err := f.svc.Refresh(bg, issuer, "app", bad)
		wantCode(t, err, accounts.CodeInvalidGrant)
	}
	// Forgeries are not reuse: the real session survives them.
	if _, err := f.svc.Refresh(bg, issuer, "app", g.Tokens.RefreshToken); err != nil {
		t.Fatalf("genuine refresh after forgeries: %v", err)
	}
}

func TestConcurrentRefreshOfOneTokenEndsSession(t *testing.T) {
	f := newFixture(t, defaultConfig())
	g, _ := f.guest(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.svc.Refresh(bg, issuer, "app", g.Tokens.RefreshToken); err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if ok > 1 {
		t.Fatalf("%d refreshes of one token succeeded", ok)
	}
	if _, err := f.store.GetSession(bg, g.Session.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("session survived a double use of its refresh token: %v", err)
	}
}

func TestSessionIdleTimeout(t *testing.T) {
	cfg := defaultConfig() // idle 24h, lifetime 72h
	f := newFixture(t, cfg)
	g, _ := f.guest(t)
	f.clock.Advance(23 * time.Hour)
	r, err := f.svc.Refresh(bg, issuer, "app", g.Tokens.RefreshToken)
	if err != nil {
		t.Fatalf("refresh within the idle timeout: %v", err)
	}
	f.clock.Advance(24*time.Hour + time.Second)
	_, err = f.svc.Refresh(bg, issuer, "app", r.Tokens.RefreshToken)
	wantCode(t, err, accounts.CodeInvalidGrant)
	if _, err := f.store.GetSession(bg, g.Session.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("idle session not deleted: %v", err)
	}
	u, err := f.store.GetUser(bg, g.User.ID)
	if err != nil || u.OrphanedAt.IsZero() {
		t.Fatalf("guest without sessions not marked orphaned: %+v %v", u, err)
	}
}

func TestSessionAbsoluteLifetime(t *testing.T) {
	f := newFixture(t, defaultConfig()) // idle 24h, lifetime 72h
	g, _ := f.guest(t)
	rt := g.Tokens.RefreshToken
	for range 3 { // used every 20h: never idle, but 80h > 72h
		f.clock.Advance(20 * time.Hour)
		r, err := f.svc.Refresh(bg, issuer, "app", rt)
		if err != nil {
			t.Fatalf("refresh at %v: %v", f.clock.Now(), err)
		}
		rt = r.Tokens.RefreshToken
	}
	f.clock.Advance(20 * time.Hour)
	_, err := f.svc.Refresh(bg, issuer, "app", rt)
	wantCode(t, err, accounts.CodeInvalidGrant)
}

func TestSweepDeletesEndedSessionsAndOrphansGuests(t *testing.T) {
	f := newFixture(t, defaultConfig())
	idle, _ := f.guest(t)
	f.clock.Advance(12 * time.Hour)
	active, _ := f.guest(t)
	f.clock.Advance(13 * time.Hour) // idle's session ended (25h), active's not (13h)

	n, err := accounts.SweepSessions(bg, f.store, f.clock.Now, 1)
	if err != nil || n != 1 {
		t.Fatalf("SweepSessions = %d, %v; want 1", n, err)
	}
	if _, err := f.store.GetSession(bg, idle.Session.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatal("ended session survived the sweep")
	}
	if _, err := f.store.GetSession(bg, active.Session.ID); err != nil {
		t.Fatalf("live session swept: %v", err)
	}
	u, _ := f.store.GetUser(bg, idle.User.ID)
	a, _ := f.store.GetUser(bg, active.User.ID)
	if u.OrphanedAt.IsZero() || !a.OrphanedAt.IsZero() {
		t.Fatalf("orphan marks: idle=%v active=%v", u.OrphanedAt, a.OrphanedAt)
	}
}

func TestUpgradeRules(t *testing.T) {
	f := newFixture(t, defaultConfig())

	// A display name alone does not upgrade.
	_, id := f.guest(t)
	res, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{DisplayName: ptr("  Ann  ")})
	if err != nil || res.Upgraded || res.User.Tag != model.TagGuest || res.User.DisplayName != "Ann" {
		t.Fatalf("display name update: %+v %v", res, err)
	}
	// Sending one's own guest name is no change; a guest_ name is refused.
	if res, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr(id.User.Name)}); err != nil || res.Upgraded {
		t.Fatalf("own guest name: %+v %v", res, err)
	}
	for _, bad := range []string{"guest_me", "GUEST_x1", "ab", "-abc", "a b c", "名前です", strings.Repeat("a", 65), ""} {
		_, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr(bad)})
		wantCode(t, err, accounts.CodeInvalidName)
	}
	if u, _ := f.store.GetUser(bg, id.User.ID); u.Tag != model.TagGuest {
		t.Fatalf("refused names changed the tag: %+v", u)
	}
	// A name upgrades and keeps the id; names are trimmed.
	res, err = f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr("  Alice.B@x-y ")})
	if err != nil || !res.Upgraded || res.User.ID != id.User.ID || res.User.Name != "Alice.B@x-y" || res.User.Tag != model.TagNormal {
		t.Fatalf("name upgrade: %+v %v", res, err)
	}
	// Names are unique case-insensitively; the loser is unchanged.
	_, id2 := f.guest(t)
	_, err = f.svc.UpdateProfile(bg, id2, accounts.ProfileUpdate{Name: ptr("alice.b@X-Y"), Password: ptr("long enough pw")})
	wantCode(t, err, accounts.CodeNameTaken)
	if u, _ := f.store.GetUser(bg, id2.User.ID); u.Tag != model.TagGuest || u.PasswordHash != "" || u.Name != id2.User.Name {
		t.Fatalf("loser changed: %+v", u)
	}
	// Password bounds.
	for _, pw := range []string{"short", strings.Repeat("x", accounts.MaxPasswordLength+1)} {
		_, err := f.svc.UpdateProfile(bg, id2, accounts.ProfileUpdate{Password: ptr(pw)})
		wantCode(t, err, accounts.CodeInvalidPassword)
	}
	_, err = f.svc.UpdateProfile(bg, id2, accounts.ProfileUpdate{})
	wantCode(t, err, accounts.CodeInvalidRequest)
}

func TestPasswordOnlyUpgradeThenSignIn(t *testing.T) {
	f := newFixture(t, defaultConfig())
	g, id := f.guest(t)
	// A guest cannot sign in, with the same answer as an unknown user.
	_, errGuest := f.svc.PasswordSignIn(bg, issuer, "app", g.User.Name, "whatever pw", "10.0.0.1")
	_, errUnknown := f.svc.PasswordSignIn(bg, issuer, "app", "nobody-here", "whatever pw", "10.0.0.1")
	wantCode(t, errGuest, accounts.CodeInvalidGrant)
	if errGuest.Error() != errUnknown.Error() {
		t.Fatalf("guest and unknown user answered differently: %v / %v", errGuest, errUnknown)
	}

	res, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("s3cret-pass")})
	if err != nil || !res.Upgraded || res.User.Name != g.User.Name || !strings.HasPrefix(res.User.PasswordHash, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("password upgrade: %+v %v", res, err)
	}
	in, err := f.svc.PasswordSignIn(bg, issuer, "app", strings.ToUpper(g.User.Name), "s3cret-pass", "10.0.0.1")
	if err != nil || in.User.ID != g.User.ID || in.Session.ID == g.Session.ID {
		t.Fatalf("sign-in after upgrade: %+v %v", in, err)
	}
	_, errWrong := f.svc.PasswordSignIn(bg, issuer, "app", g.User.Name, "wrong-pass", "10.0.0.1")
	if errWrong == nil || errWrong.Error() != errUnknown.Error() {
		t.Fatalf("wrong password answered differently: %v", errWrong)
	}
}

func TestPasswordChangeNeedsOldPasswordAndEndsOtherSessions(t *testing.T) {
	f := newFixture(t, defaultConfig())
	g, id := f.guest(t)
	if _, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr("carol"), Password: ptr("first-password")}); err != nil {
		t.Fatal(err)
	}
	other, err := f.svc.PasswordSignIn(bg, issuer, "app", "carol", "first-password", "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	id = f.authenticate(t, g.Tokens.AccessToken)
	_, err = f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("second-password")})
	wantCode(t, err, accounts.CodeWrongPassword)
	_, err = f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("second-password"), OldPassword: ptr("not-it-at-all")})
	wantCode(t, err, accounts.CodeWrongPassword)
	res, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("second-password"), OldPassword: ptr("first-password")})
	if err != nil || res.EndedSessions != 1 {
		t.Fatalf("password change: %+v %v", res, err)
	}
	got, err := f.svc.Authenticate(bg, other.Tokens.AccessToken, issuer)
	wantSessionEnded(t, got, err)
	f.authenticate(t, g.Tokens.AccessToken) // the changing session lives on
	if _, err := f.svc.PasswordSignIn(bg, issuer, "app", "carol", "second-password", "10.0.0.2"); err != nil {
		t.Fatalf("sign-in with the new password: %v", err)
	}
}

func TestConcurrentUpgradesToOneName(t *testing.T) {
	f := newFixture(t, defaultConfig())
	const n = 8
	ids := make([]*accounts.Identity, n)
	for i := range ids {
		_, ids[i] = f.guest(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.svc.UpdateProfile(bg, ids[i], accounts.ProfileUpdate{Name: ptr("Winner")})
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		if err == nil {
			won++
			continue
		}
		wantCode(t, err, accounts.CodeNameTaken)
		if u, _ := f.store.GetUser(bg, ids[i].User.ID); u.Tag != model.TagGuest {
			t.Fatalf("loser %d was changed: %+v", i, u)
		}
	}
	if won != 1 {
		t.Fatalf("%d upgrades to one name succeeded", won)
	}
}

func TestSignInThrottle(t *testing.T) {
	cfg := defaultConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 3, Interval: time.Minute}
	cfg.IPLimit = accounts.Limit{Burst: 5, Interval: time.Minute}
	f := newFixture(t, cfg)
	_, id := f.guest(t)
	if _, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr("dave"), Password: ptr("right-password")}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_, err := f.svc.PasswordSignIn(bg, issuer, "app", "dave", "wrong-password", "10.0.0.3")
		wantCode(t, err, accounts.CodeInvalidGrant)
	}
	// The account is locked even for the right password, from any IP.
	_, err := f.svc.PasswordSignIn(bg, issuer, "app", "DAVE", "right-password", "10.9.9.9")
	var te *accounts.ThrottledError
	if !errors.As(err, &te) || te.RetrySeconds() < 1 || te.RetrySeconds() > 60 {
		t.Fatalf("4th attempt = %v; want throttled within a minute", err)
	}
	f.clock.Advance(time.Minute)
	if _, err := f.svc.PasswordSignIn(bg, issuer, "app", "dave", "right-password", "10.0.0.3"); err != nil {
		t.Fatalf("after the interval: %v", err)
	}
	// Per IP: failures on many accounts from one address.
	for i := range 5 {
		_, err := f.svc.PasswordSignIn(bg, issuer, "app", "user"+string(rune('a'+i)), "x-password", "10.0.0.4")
		wantCode(t, err, accounts.CodeInvalidGrant)
	}
	_, err = f.svc.PasswordSignIn(bg, issuer, "app", "dave", "right-password", "10.0.0.4")
	if !errors.As(err, &te) {
		t.Fatalf("IP with 5 failures not throttled: %v", err)
	}
}

func TestRevoke(t *testing.T) {
	f := newFixture(t, defaultConfig())
	a, _ := f.guest(t)
	b, _ := f.guest(t)
	wantCode(t, f.svc.Revoke(bg, issuer, "other", a.Tokens.RefreshToken), accounts.CodeUnauthorizedClient)
	if err := f.svc.Revoke(bg, issuer, "app", "not-a-token"); err != nil {
		t.Fatalf("unknown token: %v", err)
	}
	if err := f.svc.Revoke(bg, issuer, "app", a.Tokens.RefreshToken); err != nil {
		t.Fatal(err)
	}
	id, err := f.svc.Authenticate(bg, a.Tokens.AccessToken, issuer)
	wantSessionEnded(t, id, err)
	if err := f.svc.Revoke(bg, issuer, "app", b.Tokens.AccessToken); err != nil {
		t.Fatal(err)
	}
	id, err = f.svc.Authenticate(bg, b.Tokens.AccessToken, issuer)
	wantSessionEnded(t, id, err)
	if _, err := f.svc.Refresh(bg, issuer, "app", b.Tokens.RefreshToken); err == nil {
		t.Fatal("refresh token of a revoked session works")
	}
}

func TestPasswordHashFormat(t *testing.T) {
	h, err := accounts.HashPassword("pässwörd-1", accounts.Argon2Params{MemoryKiB: 1024, Time: 1, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=1024,t=1,p=1$") {
		t.Fatalf("hash %q does not carry its parameters", h)
	}
	if ok, err := accounts.VerifyPassword("pässwörd-1", h); !ok || err != nil {
		t.Fatalf("verify right password: %v %v", ok, err)
	}
	if ok, _ := accounts.VerifyPassword("pässwörd-2", h); ok {
		t.Fatal("wrong password verified")
	}
	for _, bad := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA"} {
		if _, err := accounts.VerifyPassword("x", bad); err == nil {
			t.Fatalf("malformed hash %q accepted", bad)
		}
	}
}

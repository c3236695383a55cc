package accounts_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

func browserConfig() accounts.Config {
	cfg := defaultConfig()
	cfg.BrowserUnconfirmed = time.Hour
	return cfg
}

func wantInvalid(t *testing.T, err error, reason string) {
	t.Helper()
	var inv *tokens.InvalidError
	if !errors.As(err, &inv) || inv.Reason != reason {
		t.Fatalf("err = %v, want invalid %s", err, reason)
	}
}

func flip(c string) string {
	if c == "A" {
		return "B"
	}
	return "A"
}

func TestBrowserGuestHandle(t *testing.T) {
	f := newFixture(t, browserConfig())
	login, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if !login.User.IsAnonymous() || login.Session.ClientID != accounts.BrowserClientID {
		t.Fatalf("login %+v %+v", login.User, login.Session)
	}
	// Opaque: no JWT, no refresh token; the random part is 256 bits.
	parts := strings.Split(login.Handle, ".")
	if len(parts) != 3 || parts[0] != login.Session.ID || len(parts[2]) < 43 {
		t.Fatalf("handle %q", login.Handle)
	}
	// Unconfirmed: ends after the short window unless it comes back.
	if got := login.Session.EndsAt(); !got.Equal(f.clock.Now().Add(time.Hour)) {
		t.Fatalf("unconfirmed session ends at %v", got)
	}
	id, slid, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	if err != nil || id.User.ID != login.User.ID {
		t.Fatalf("authenticate: %v %v", id, err)
	}
	// Its first return confirms it: the idle timeout now applies.
	if slid == nil || !slid.Session.EndsAt().Equal(f.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("first return did not confirm the session: %+v", slid)
	}
	// Forgeries: another MAC, another session's MAC, truncations.
	other, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	op := strings.Split(other.Handle, ".")
	for _, h := range []string{
		parts[0] + "." + parts[1] + "." + op[2],
		parts[0] + "." + parts[1] + "." + parts[2][:42] + flip(parts[2][42:]),
		parts[0] + "." + op[1] + "." + parts[2],
		parts[0] + "." + parts[1],
		"garbage",
		"",
	} {
		if id, _, err := f.svc.BrowserAuthenticate(bg, h, issuer); err == nil {
			t.Fatalf("handle %q accepted as %v", h, id.User.ID)
		} else if errors.As(err, new(*tokens.InvalidError)) == false {
			t.Fatalf("handle %q: %v, want an invalid error", h, err)
		}
	}
}

// A session of an API client (with a refresh key too) is not a browser
// session, even with a correctly keyed handle.
// Browser guests come from the one guest constructor, like every other
// guest: a UUIDv7 id (time-ordered, as the README promises), the name
// guest_<id>, the guest tag; consecutive ones sort in creation order.
func TestBrowserGuestsHaveV7Ids(t *testing.T) {
	f := newFixture(t, browserConfig())
	var users []*model.User
	for range 3 {
		login, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, login.User)
	}
	registered, err := f.svc.RegisterBrowser(bg, issuer, "alice", "correct horse battery", "192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range append(users, registered.User) {
		if id, err := uuid.Parse(u.ID); err != nil || id.Version() != 7 {
			t.Fatalf("browser guest id %q is not a UUIDv7 (%v)", u.ID, err)
		}
		if i < len(users) && (u.Name != model.GuestNamePrefix+u.ID || u.Tag != model.TagGuest || !u.IsAnonymous()) {
			t.Fatalf("browser guest %+v", u)
		}
		if i > 0 && u.ID <= users[i-1].ID {
			t.Fatalf("ids not increasing: %s after %s", u.ID, users[i-1].ID)
		}
	}
}

func TestBrowserHandleOfClientSessionRefused(t *testing.T) {
	f := newFixture(t, browserConfig())
	iss, err := f.svc.CreateGuest(bg, issuer, "app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = f.svc.BrowserAuthenticate(bg, accounts.BrowserHandle(iss.Session), issuer)
	wantInvalid(t, err, tokens.ReasonSignature)
}

func TestBrowserSessionEnds(t *testing.T) {
	f := newFixture(t, browserConfig())
	login, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	id, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.EndBrowserSession(bg, id); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	wantInvalid(t, err, accounts.ReasonSessionEnded)

	// Deleting the user ends it too; an unconfirmed session ends after its
	// window.
	login2, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	login3, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	if err := f.store.DeleteUser(bg, login2.User.ID, nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = f.svc.BrowserAuthenticate(bg, login2.Handle, issuer)
	wantInvalid(t, err, accounts.ReasonSessionEnded)
	f.clock.Advance(time.Hour)
	_, _, err = f.svc.BrowserAuthenticate(bg, login3.Handle, issuer)
	wantInvalid(t, err, accounts.ReasonSessionEnded)
}

// Sliding expiry writes the store at most once per BrowserSlideEvery per
// session, however many requests (parallel or not) use it, and never ends
// the session.
func TestBrowserSlidingWritesRarely(t *testing.T) {
	f := newFixture(t, browserConfig())
	login, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	if _, slid, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer); err != nil || slid == nil {
		t.Fatalf("confirming: %v %v", slid, err)
	}
	writes := f.store.Writes()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			if _, slid, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer); err != nil || slid != nil {
				errs <- errors.Join(err, errors.New("slid within the interval"))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if w := f.store.Writes(); w != writes {
		t.Fatalf("%d store writes for 100 requests within the slide interval", w-writes)
	}
	// After the interval, one slide moves the idle expiry.
	f.clock.Advance(accounts.BrowserSlideEvery)
	_, slid, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	if err != nil || slid == nil || !slid.Session.IdleExpiresAt.Equal(f.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("slide after the interval: %+v %v", slid, err)
	}
	if w := f.store.Writes(); w != writes+1 {
		t.Fatalf("%d writes for one slide", w-writes)
	}
	// Used every 20h, it outlives its 24h idle timeout, up to the absolute
	// lifetime (72h).
	for range 3 {
		f.clock.Advance(20 * time.Hour)
		if _, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer); err != nil && f.clock.Now().Before(login.Session.ExpiresAt) {
			t.Fatalf("used session ended at %v: %v", f.clock.Now(), err)
		}
	}
	f.clock.Advance(20 * time.Hour)
	_, _, err = f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	wantInvalid(t, err, accounts.ReasonSessionEnded)
}

// A guest whose cookie never comes back is orphaned when its unconfirmed
// session ends, and pruned as an orphan.
func TestUnconfirmedBrowserGuestPruned(t *testing.T) {
	f := newFixture(t, browserConfig())
	gone, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	back, _ := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	if _, _, err := f.svc.BrowserAuthenticate(bg, back.Handle, issuer); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Hour)
	if _, err := accounts.SweepSessions(bg, f.store, f.clock.Now, 100); err != nil {
		t.Fatal(err)
	}
	rep, err := accounts.Prune(bg, f.store, f.clock.Now(), accounts.PruneOptions{IdleTTL: 30 * 24 * time.Hour, MaxListed: 10}, nil)
	if err != nil || rep.Count != 1 || rep.Users[0].UserID != gone.User.ID || rep.Users[0].Reason != accounts.PruneOrphan {
		t.Fatalf("prune: %+v %v", rep, err)
	}
	if _, err := f.store.GetUser(bg, back.User.ID); err != nil {
		t.Fatalf("confirmed guest pruned: %v", err)
	}
	if _, _, err := f.svc.BrowserAuthenticate(bg, back.Handle, issuer); err != nil {
		t.Fatalf("confirmed guest's session: %v", err)
	}
}

func TestBrowserGuestLimits(t *testing.T) {
	cfg := browserConfig()
	cfg.Guests.PerIP = accounts.Limit{Burst: 1, Interval: time.Hour}
	f := newFixture(t, cfg)
	if _, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	wantThrottled(t, err, accounts.LimitIP)
	if live, _, _ := f.store.GuestCounts(bg); live != 1 {
		t.Fatalf("%d guests after a refused creation", live)
	}
}

func TestBrowserSessionWithoutPrevious(t *testing.T) {
	f := newFixture(t, browserConfig())
	u := &model.User{ID: "11111111-1111-1111-1111-111111111111", Name: "alice", Tag: model.TagNormal}
	if err := f.store.CreateUser(bg, u, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	login, err := f.svc.RotateBrowserSession(bg, nil, u, issuer)
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	if err != nil || id.User.Name != "alice" || !login.Session.EndsAt().Equal(f.clock.Now().Add(24*time.Hour)) {
		t.Fatalf("%v %v %v", id, err, login.Session.EndsAt())
	}
}

func TestRegisterAndSignInBrowser(t *testing.T) {
	cfg := browserConfig()
	cfg.ReservedNames = accounts.DefaultReservedNames
	f := newFixture(t, cfg)
	login, err := f.svc.RegisterBrowser(bg, issuer, "alice", "correct horse battery", "192.0.2.1")
	if err != nil || login.User.IsAnonymous() || login.User.Name != "alice" {
		t.Fatalf("register: %+v %v", login, err)
	}
	// The same rules and messages as update-user; a refusal leaves no user.
	for _, c := range []struct{ name, pw, code string }{
		{"alice", "correct horse battery", accounts.CodeNameTaken},
		{"ALICE", "correct horse battery", accounts.CodeNameTaken},
		{"guest_x", "correct horse battery", accounts.CodeInvalidName},
		{"admin", "correct horse battery", accounts.CodeInvalidName},
		{"bob", "short", accounts.CodeInvalidPassword},
	} {
		_, err := f.svc.RegisterBrowser(bg, issuer, c.name, c.pw, "192.0.2.1")
		var ae *accounts.Error
		if !errors.As(err, &ae) || ae.Code != c.code {
			t.Fatalf("register %q: %v, want %s", c.name, err, c.code)
		}
	}
	if live, _, _ := f.store.GuestCounts(bg); live != 0 {
		t.Fatalf("%d guests left behind by refused registrations", live)
	}
	if _, err := f.svc.BrowserSignIn(bg, nil, issuer, "alice", "wrong password!!", "192.0.2.1"); err == nil {
		t.Fatal("wrong password accepted")
	}
	in, err := f.svc.BrowserSignIn(bg, nil, issuer, "Alice", "correct horse battery", "192.0.2.1")
	if err != nil || in.User.ID != login.User.ID || in.Session.ID == login.Session.ID {
		t.Fatalf("sign-in: %+v %v", in, err)
	}
	if id, _, err := f.svc.BrowserAuthenticate(bg, in.Handle, issuer); err != nil || id.User.ID != login.User.ID {
		t.Fatalf("signed-in handle: %v %v", id, err)
	}
}

// A sign-in from a guest's browser session stores the merge on the new
// session, so whichever instance serves its first proxied request tells
// the app, exactly once however many requests race for it.
func TestMergeStoredAndTakenOnce(t *testing.T) {
	f := newFixture(t, browserConfig())
	if _, err := f.svc.RegisterBrowser(bg, issuer, "alice", "correct horse battery", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	guest, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	prev, _, err := f.svc.BrowserAuthenticate(bg, guest.Handle, issuer)
	if err != nil {
		t.Fatal(err)
	}
	login, err := f.svc.BrowserSignIn(bg, prev, issuer, "alice", "correct horse battery", "192.0.2.2")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.BrowserAuthenticate(bg, guest.Handle, issuer); err == nil {
		t.Fatal("the guest's browser session survived the sign-in")
	}
	// As another instance would: from the store, not from login.
	stored, err := f.store.GetSession(bg, login.Session.ID)
	if err != nil || stored.MergedFrom != guest.User.ID {
		t.Fatalf("stored session: %+v %v", stored, err)
	}
	id, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	got := make([]string, 20)
	for i := range got {
		wg.Go(func() {
			var err error
			if got[i], err = f.svc.TakeMerge(bg, id); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	told := 0
	for _, g := range got {
		if g == guest.User.ID {
			told++
		} else if g != "" {
			t.Fatalf("TakeMerge = %q", g)
		}
	}
	if told != 1 {
		t.Fatalf("the app was told of the merge %d times, want once", told)
	}
	told2, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	if err != nil || told2.Session.MergedFrom != "" {
		t.Fatalf("after the merge was told: %+v %v", told2, err)
	}
	// A sign-in from a normal user's session is no merge.
	again, err := f.svc.BrowserSignIn(bg, told2, issuer, "alice", "correct horse battery", "192.0.2.2")
	if err != nil || again.Session.MergedFrom != "" {
		t.Fatalf("normal-user session: %+v, %v", again, err)
	}
}

package accounts_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/mail"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

const linkBase = "https://example.test/auth/"

// emailFixture is a Service whose mail is queued in its store's outbox by
// the real mailer (never started: the test reads the queue).
type emailFixture struct {
	*fixture
	obs *observed
}

func newEmailFixture(t *testing.T, mod func(*accounts.Config)) *emailFixture {
	t.Helper()
	cfg := defaultConfig()
	cfg.Argon2 = accounts.Argon2Params{Time: 1, MemoryKiB: 1024, Threads: 1}
	obs := &observed{}
	cfg.Observer = obs.observe
	st := openStore(t)
	m, err := mail.New(mail.Config{Store: st, SMTP: "127.0.0.1:1", From: "Guest Auth <noreply@example.test>", Site: "example.test"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Mailer = m
	if mod != nil {
		mod(&cfg)
	}
	f := newFixtureOn(t, st, cfg)
	return &emailFixture{fixture: f, obs: obs}
}

// mails takes the mail queued so far.
func (f *emailFixture) mails(t *testing.T) []mail.Message {
	t.Helper()
	recs, err := f.store.OutboxClaim(bg, mail.Target, f.clock.Now().Add(1000*time.Hour), time.Minute, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []mail.Message
	for _, r := range recs {
		var m mail.Message
		if err := json.Unmarshal(r.Body, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
		if err := f.store.OutboxDelete(bg, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// oneLink takes the one mail queued, checks its kind and recipient, and
// returns its link's token.
func (f *emailFixture) oneLink(t *testing.T, kind, to, path string) string {
	t.Helper()
	ms := f.mails(t)
	if len(ms) != 1 || ms[0].Kind != kind || ms[0].To != to {
		t.Fatalf("mails %+v, want one %s to %s", ms, kind, to)
	}
	prefix := linkBase + path + "?token="
	i := strings.Index(ms[0].Text, prefix)
	if i < 0 || !strings.Contains(ms[0].HTML, prefix) {
		t.Fatalf("no %s link in %+v", prefix, ms[0])
	}
	tok := ms[0].Text[i+len(prefix):]
	if j := strings.IndexAny(tok, " \r\n"); j >= 0 {
		tok = tok[:j]
	}
	return tok
}

func wantEmailCode(t *testing.T, step string, err error, code, inDesc string) {
	t.Helper()
	var e *accounts.Error
	if !errors.As(err, &e) || e.Code != code || !strings.Contains(e.Description, inDesc) {
		t.Fatalf("%s: err = %v, want %s (%q)", step, err, code, inDesc)
	}
}

func (f *emailFixture) register(t *testing.T, name, pw string) *accounts.Identity {
	t.Helper()
	l, err := f.svc.RegisterBrowser(bg, "https://example.test", name, pw, "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return &accounts.Identity{User: l.User, Session: l.Session}
}

func (f *emailFixture) verified(t *testing.T, id *accounts.Identity, addr string) *model.User {
	t.Helper()
	if _, err := f.svc.SetEmail(bg, id, accounts.SetEmailRequest{Email: addr, LinkBase: linkBase, ClientIP: "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	norm, _ := accounts.NormalizeEmail(addr)
	tok := f.oneLink(t, accounts.MailVerify, norm, accounts.LinkVerify)
	u, _, err := f.svc.VerifyEmail(bg, nil, tok, "https://example.test")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestNormalizeEmail(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":                       "alice@example.com",
		"  Alice@EXAMPLE.com ":                    "Alice@example.com",
		"bob@Bücher.example":                      "bob@xn--bcher-kva.example",
		"bob@xn--bcher-kva.example":               "bob@xn--bcher-kva.example",
		"carol@example..com":                      "",
		"Alice <alice@example.com>":               "",
		"alice":                                   "",
		"alice@":                                  "",
		"@example.com":                            "",
		"alice@localhost":                         "",
		"a b@example.com":                         "",
		"alice@example.com\r\nBcc: x@example.com": "",
		strings.Repeat("a", 250) + "@example.com": "",
	} {
		got, err := accounts.NormalizeEmail(in)
		if want == "" {
			wantEmailCode(t, in, err, accounts.CodeInvalidEmail, "email address")
			continue
		}
		if err != nil || got != want {
			t.Errorf("NormalizeEmail(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// An address counts once its link is opened; the link works once, for
// 24 hours; sign-in then takes the address as well as the username.
func TestVerifyEmailAndSignInWithIt(t *testing.T) {
	f := newEmailFixture(t, nil)
	id := f.register(t, "alice", "correct horse")
	u, err := f.svc.SetEmail(bg, id, accounts.SetEmailRequest{Email: "Alice@Example.TEST", LinkBase: linkBase, ClientIP: "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Email != "Alice@example.test" || u.EmailVerified {
		t.Fatalf("after SetEmail: %+v", u)
	}
	tok := f.oneLink(t, accounts.MailVerify, "Alice@example.test", accounts.LinkVerify)
	// Unverified: no sign-in by it, no lookup.
	if _, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: "alice@example.test", Password: "correct horse"}); err == nil {
		t.Fatal("an unverified address signed in")
	}
	if _, err := f.store.GetUserByEmail(bg, "alice@example.test"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("unverified address indexed: %v", err)
	}
	// The user's own browser opening it gets a new session.
	u, login, err := f.svc.VerifyEmail(bg, id, tok, "https://example.test")
	if err != nil || !u.EmailVerified || login == nil || login.Session.ID == id.Session.ID {
		t.Fatalf("VerifyEmail = %+v, %+v, %v", u, login, err)
	}
	if _, _, err := f.svc.BrowserAuthenticate(bg, accounts.BrowserHandle(id.Session), "https://example.test"); err == nil {
		t.Fatal("the session from before the verification survived")
	}
	_, _, err = f.svc.VerifyEmail(bg, nil, tok, "https://example.test")
	wantEmailCode(t, "reused link", err, accounts.CodeInvalidGrant, "already used")
	// A different token of the same shape: change its first character
	// (to one it does not already have, or the "unknown" link is the real one).
	other := "x"
	if tok[0] == 'x' {
		other = "y"
	}
	_, _, err = f.svc.VerifyEmail(bg, nil, other+tok[1:], "https://example.test")
	wantEmailCode(t, "unknown link", err, accounts.CodeInvalidGrant, "invalid or has expired")
	_, _, err = f.svc.VerifyEmail(bg, nil, "short", "https://example.test")
	wantEmailCode(t, "malformed link", err, accounts.CodeInvalidGrant, "invalid or has expired")

	for _, name := range []string{"alice", "ALICE@example.test", " alice@EXAMPLE.test"} {
		if _, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: strings.TrimSpace(name), Password: "correct horse"}); err != nil {
			t.Fatalf("sign in as %q: %v", name, err)
		}
	}
	if _, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: "alice@example.test", Password: "wrong horse!"}); err == nil {
		t.Fatal("a wrong password signed in by address")
	}
	// The same address again: nothing to do, no mail.
	if _, err := f.svc.SetEmail(bg, &accounts.Identity{User: u, Session: login.Session}, accounts.SetEmailRequest{Email: "alice@EXAMPLE.test", LinkBase: linkBase}); err != nil {
		t.Fatal(err)
	}
	if ms := f.mails(t); len(ms) != 0 {
		t.Fatalf("mailed %+v", ms)
	}
}

func TestVerifyLinkExpires(t *testing.T) {
	f := newEmailFixture(t, nil)
	id := f.register(t, "bob", "correct horse")
	if _, err := f.svc.SetEmail(bg, id, accounts.SetEmailRequest{Email: "bob@example.test", LinkBase: linkBase}); err != nil {
		t.Fatal(err)
	}
	tok := f.oneLink(t, accounts.MailVerify, "bob@example.test", accounts.LinkVerify)
	f.clock.Advance(accounts.VerifyTTL + time.Second)
	_, _, err := f.svc.VerifyEmail(bg, nil, tok, "https://example.test")
	wantEmailCode(t, "expired link", err, accounts.CodeInvalidGrant, "invalid or has expired")
}

// A changed address starts unverified, the previous verified one gets a
// notice, and a link to an address the account no longer has is dead.
func TestChangeEmail(t *testing.T) {
	f := newEmailFixture(t, nil)
	id := f.register(t, "carol", "correct horse")
	f.verified(t, id, "carol@example.test")
	u, err := f.svc.SetEmail(bg, id, accounts.SetEmailRequest{Email: "carol@new.example", LinkBase: linkBase})
	if err != nil || u.EmailVerified || u.Email != "carol@new.example" {
		t.Fatalf("%+v, %v", u, err)
	}
	ms := f.mails(t)
	if len(ms) != 2 {
		t.Fatalf("mails %+v", ms)
	}
	var notice *mail.Message
	var tok string
	for i := range ms {
		switch ms[i].Kind {
		case accounts.MailChanged:
			notice = &ms[i]
		case accounts.MailVerify:
			tok = ms[i].Text[strings.Index(ms[i].Text, "token=")+6:]
			tok = tok[:strings.IndexAny(tok, " \n")]
		}
	}
	if notice == nil || notice.To != "carol@example.test" || !strings.Contains(notice.Text, "carol@new.example") {
		t.Fatalf("notice %+v", notice)
	}
	if _, err := f.store.GetUserByEmail(bg, "carol@example.test"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("the old address still signs in: %v", err)
	}
	// Changed again before opening: the first link is dead.
	if _, err := f.svc.SetEmail(bg, id, accounts.SetEmailRequest{Email: "carol@third.example", LinkBase: linkBase}); err != nil {
		t.Fatal(err)
	}
	f.mails(t)
	_, _, err = f.svc.VerifyEmail(bg, nil, tok, "https://example.test")
	wantEmailCode(t, "stale link", err, accounts.CodeInvalidGrant, "no longer has")
}

// An address another user verified first cannot be verified again; the
// refusal goes to the link's opener (the address's owner), not to whoever
// typed it, so adding an address tells nothing about other accounts.
func TestVerifiedEmailIsUnique(t *testing.T) {
	f := newEmailFixture(t, nil)
	a := f.register(t, "dora", "correct horse")
	f.verified(t, a, "dora@example.test")
	b := f.register(t, "eve", "correct horse")
	if _, err := f.svc.SetEmail(bg, b, accounts.SetEmailRequest{Email: "DORA@example.test", LinkBase: linkBase}); err != nil {
		t.Fatalf("SetEmail of a taken address must not tell: %v", err)
	}
	tok := f.oneLink(t, accounts.MailVerify, "DORA@example.test", accounts.LinkVerify)
	_, _, err := f.svc.VerifyEmail(bg, nil, tok, "https://example.test")
	wantEmailCode(t, "taken", err, accounts.CodeEmailTaken, "another account")
	if u, _ := f.store.GetUserByEmail(bg, "dora@example.test"); u == nil || u.ID != a.User.ID {
		t.Fatalf("owner changed: %+v", u)
	}
}

// Forgot password: the same answer for a known and an unknown address; a
// reset link sets a new password once, ends every session and reports
// password.reset.
func TestPasswordReset(t *testing.T) {
	f := newEmailFixture(t, nil)
	id := f.register(t, "frank", "correct horse")
	f.verified(t, id, "frank@example.test")
	other, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: "frank", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	f.obs.take()

	if err := f.svc.ForgotPassword(bg, accounts.EmailLinkRequest{Email: "nobody@example.test", LinkBase: linkBase, ClientIP: "10.0.0.2"}); err != nil {
		t.Fatalf("unknown address: %v", err)
	}
	if ms := f.mails(t); len(ms) != 0 {
		t.Fatalf("mailed an unknown address: %+v", ms)
	}
	if err := f.svc.ForgotPassword(bg, accounts.EmailLinkRequest{Email: "Frank@Example.test", LinkBase: linkBase, ClientIP: "10.0.0.2"}); err != nil {
		t.Fatalf("known address: %v", err)
	}
	tok := f.oneLink(t, accounts.MailReset, "frank@example.test", accounts.LinkReset)
	if err := f.svc.ResetLink(bg, tok); err != nil {
		t.Fatal(err)
	}
	// A refused password leaves the link usable.
	_, err = f.svc.ResetPassword(bg, nil, accounts.ResetRequest{Handle: tok, Password: "short", Issuer: "https://example.test"})
	wantEmailCode(t, "short password", err, accounts.CodeInvalidPassword, "characters")
	login, err := f.svc.ResetPassword(bg, nil, accounts.ResetRequest{Handle: tok, Password: "battery staple", Issuer: "https://example.test", ClientIP: "10.0.0.2"})
	if err != nil || login.User.ID != id.User.ID {
		t.Fatalf("ResetPassword = %+v, %v", login, err)
	}
	// Every session from before ended: the browser's and the token client's.
	if _, _, err := f.svc.BrowserAuthenticate(bg, accounts.BrowserHandle(id.Session), "https://example.test"); err == nil {
		t.Fatal("a browser session survived the reset")
	}
	if _, err := f.store.GetSession(bg, other.Session.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("a token session survived the reset: %v", err)
	}
	if _, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, "https://example.test"); err != nil {
		t.Fatalf("the new session: %v", err)
	}
	evs := f.obs.take()
	var reset, revoked bool
	for _, ev := range evs {
		reset = reset || ev.Type == events.PasswordReset && ev.UserID == id.User.ID
		revoked = revoked || ev.Type == events.SessionRevoked && ev.Data["cause"] == "password_reset"
	}
	if !reset || !revoked {
		t.Fatalf("events %+v", evs)
	}
	if _, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: "frank@example.test", Password: "correct horse"}); err == nil {
		t.Fatal("the old password still works")
	}
	if _, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: "frank@example.test", Password: "battery staple"}); err != nil {
		t.Fatalf("the new password: %v", err)
	}
	_, err = f.svc.ResetPassword(bg, nil, accounts.ResetRequest{Handle: tok, Password: "another one!", Issuer: "https://example.test"})
	wantEmailCode(t, "reused link", err, accounts.CodeInvalidGrant, "already used")
	wantEmailCode(t, "reused link check", f.svc.ResetLink(bg, tok), accounts.CodeInvalidGrant, "already used")
}

// A reset link dies when it expires and when the password changes
// otherwise meanwhile.
func TestResetLinkExpiresAndDiesWithThePassword(t *testing.T) {
	f := newEmailFixture(t, nil)
	id := f.register(t, "gina", "correct horse")
	f.verified(t, id, "gina@example.test")
	ask := func() string {
		if err := f.svc.ForgotPassword(bg, accounts.EmailLinkRequest{Email: "gina@example.test", LinkBase: linkBase}); err != nil {
			t.Fatal(err)
		}
		return f.oneLink(t, accounts.MailReset, "gina@example.test", accounts.LinkReset)
	}
	tok := ask()
	f.clock.Advance(accounts.ResetTTL + time.Second)
	_, err := f.svc.ResetPasswordAPI(bg, accounts.ResetRequest{Handle: tok, Password: "battery staple"})
	wantEmailCode(t, "expired", err, accounts.CodeInvalidGrant, "invalid or has expired")

	tok = ask()
	cur, err := f.store.GetUser(bg, id.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: "gina", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	pw, old := "new password 1", "correct horse"
	if _, err := f.svc.UpdateProfile(bg, &accounts.Identity{User: cur, Session: sess.Session}, accounts.ProfileUpdate{Password: &pw, OldPassword: &old, Issuer: "https://example.test"}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.ResetPasswordAPI(bg, accounts.ResetRequest{Handle: tok, Password: "battery staple"})
	wantEmailCode(t, "password changed since", err, accounts.CodeInvalidGrant, "invalid or has expired")
}

// A guest with a verified address comes back on another device with a
// sign-in link, as the same user; from another guest's session it is a
// merge, as any sign-in.
func TestSignInLinkBringsAGuestBack(t *testing.T) {
	f := newEmailFixture(t, nil)
	g, err := f.svc.CreateBrowserGuest(bg, "https://example.test", "10.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	gid := &accounts.Identity{User: g.User, Session: g.Session}
	u := f.verified(t, gid, "guest@example.test")
	if !u.IsAnonymous() || u.Ephemeral() {
		t.Fatalf("a guest with a verified address must stay a guest and not expire: %+v", u)
	}
	if err := f.svc.RequestSignInLink(bg, accounts.EmailLinkRequest{Email: "guest@example.test", LinkBase: linkBase, ClientIP: "10.0.0.4"}); err != nil {
		t.Fatal(err)
	}
	tok := f.oneLink(t, accounts.MailSignIn, "guest@example.test", accounts.LinkSignIn)
	// A fresh browser (no session) signs in as the guest.
	login, err := f.svc.SignInWithLink(bg, nil, tok, "https://example.test")
	if err != nil || login.User.ID != g.User.ID {
		t.Fatalf("SignInWithLink = %+v, %v", login, err)
	}
	_, err = f.svc.SignInWithLink(bg, nil, tok, "https://example.test")
	wantEmailCode(t, "reused", err, accounts.CodeInvalidGrant, "already used")

	// From another guest's browser: a merge.
	other, err := f.svc.CreateBrowserGuest(bg, "https://example.test", "10.0.0.5")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.svc.RequestSignInLink(bg, accounts.EmailLinkRequest{Email: "guest@example.test", LinkBase: linkBase}); err != nil {
		t.Fatal(err)
	}
	tok = f.oneLink(t, accounts.MailSignIn, "guest@example.test", accounts.LinkSignIn)
	f.obs.take()
	login, err = f.svc.SignInWithLink(bg, &accounts.Identity{User: other.User, Session: other.Session}, tok, "https://example.test")
	if err != nil || login.User.ID != g.User.ID || login.Session.MergedFrom != other.User.ID {
		t.Fatalf("merge: %+v, %v", login, err)
	}
	f.obs.wantOne(t, "merge", events.GuestMerged, g.User.ID, map[string]any{"guest_id": other.User.ID})

	f.clock.Advance(accounts.SignInTTL + time.Second)
	if err := f.svc.RequestSignInLink(bg, accounts.EmailLinkRequest{Email: "nobody@example.test", LinkBase: linkBase}); err != nil {
		t.Fatalf("unknown address: %v", err)
	}
	if ms := f.mails(t); len(ms) != 0 {
		t.Fatalf("mailed an unknown address: %+v", ms)
	}
}

func TestSignInLinkExpires(t *testing.T) {
	f := newEmailFixture(t, nil)
	id := f.register(t, "hank", "correct horse")
	f.verified(t, id, "hank@example.test")
	if err := f.svc.RequestSignInLink(bg, accounts.EmailLinkRequest{Email: "hank@example.test", LinkBase: linkBase}); err != nil {
		t.Fatal(err)
	}
	tok := f.oneLink(t, accounts.MailSignIn, "hank@example.test", accounts.LinkSignIn)
	f.clock.Advance(accounts.SignInTTL + time.Second)
	_, err := f.svc.SignInWithLink(bg, nil, tok, "https://example.test")
	wantEmailCode(t, "expired", err, accounts.CodeInvalidGrant, "invalid or has expired")
}

// The mail budgets hold under 60 requests at once, and are spent before
// any lookup: a known and an unknown address are refused alike.
func TestMailLimits(t *testing.T) {
	f := newEmailFixture(t, func(cfg *accounts.Config) {
		cfg.MailAddressLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
		cfg.MailIPLimit = accounts.Limit{Burst: 5, Interval: time.Hour}
	})
	id := f.register(t, "ivy", "correct horse")
	f.verified(t, id, "ivy@example.test") // one try of ivy@ and of 10.0.0.1
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, throttled := 0, 0
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := "10.1.0." + string(rune('0'+i%2)) // two networks
			err := f.svc.ForgotPassword(bg, accounts.EmailLinkRequest{Email: "ivy@example.test", LinkBase: linkBase, ClientIP: ip})
			mu.Lock()
			defer mu.Unlock()
			var te *accounts.ThrottledError
			switch {
			case err == nil:
				ok++
			case errors.As(err, &te) && te.Limit == accounts.LimitEmail && te.RetryAfter > 0:
				throttled++
			default:
				t.Errorf("request %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if ok != 2 || throttled != 58 {
		t.Fatalf("admitted %d, throttled %d; want 2 (the address's budget left), 58", ok, throttled)
	}
	if ms := f.mails(t); len(ms) != 2 {
		t.Fatalf("%d mails sent, want 2", len(ms))
	}
	// Per network: 5 tries, whichever addresses, known or not.
	for i := range 7 {
		err := f.svc.RequestSignInLink(bg, accounts.EmailLinkRequest{Email: "x" + string(rune('a'+i)) + "@example.test", LinkBase: linkBase, ClientIP: "10.2.0.1"})
		var te *accounts.ThrottledError
		if i < 5 && err != nil || i >= 5 && !errors.As(err, &te) {
			t.Fatalf("try %d from one network: %v", i, err)
		}
	}
}

// Without a mailer nothing about email is offered.
func TestNoMailer(t *testing.T) {
	f := newEmailFixture(t, func(cfg *accounts.Config) { cfg.Mailer = nil })
	if f.svc.EmailEnabled() {
		t.Fatal("EmailEnabled without a mailer")
	}
	err := f.svc.ForgotPassword(bg, accounts.EmailLinkRequest{Email: "a@example.test"})
	wantEmailCode(t, "forgot", err, accounts.CodeNoEmail, "not configured")
	g, err := f.svc.CreateBrowserGuest(bg, "https://example.test", "10.0.0.3")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.SetEmail(context.Background(), &accounts.Identity{User: g.User, Session: g.Session}, accounts.SetEmailRequest{Email: "a@example.test"})
	wantEmailCode(t, "set", err, accounts.CodeNoEmail, "not configured")
}

// UserInfo carries the address with scope email only.
func TestUserInfoEmail(t *testing.T) {
	u := &model.User{ID: "u1", Name: "alice", Tag: model.TagNormal, Email: "alice@example.test", EmailVerified: true}
	if info := accounts.UserInfo(u, "openid"); info["email"] != nil || info["email_verified"] != nil {
		t.Fatalf("without scope email: %v", info)
	}
	info := accounts.UserInfo(u, "openid email")
	if info["email"] != "alice@example.test" || info["email_verified"] != true || info["https://authgear.com/claims/user/is_verified"] != true {
		t.Fatalf("with scope email: %v", info)
	}
}

// Usernames may hold @: a username is looked up first, then a verified
// address; the sign-in budget is the account's, whichever way it was
// named, so the name and the address do not give twice the guesses.
func TestSignInNameBeforeAddress(t *testing.T) {
	f := newEmailFixture(t, func(cfg *accounts.Config) {
		cfg.AccountLimit = accounts.Limit{Burst: 2, Interval: time.Hour}
	})
	named := f.register(t, "x@example.test", "password of x")
	other := f.register(t, "yves", "password of yves")
	f.verified(t, other, "x@example.test")
	issued, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: "x@example.test", Password: "password of x"})
	if err != nil || issued.User.ID != named.User.ID {
		t.Fatalf("the username first: %+v, %v", issued, err)
	}
	if _, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: "x@example.test", Password: "password of yves"}); err == nil {
		t.Fatal("the address shadowed a username")
	}
	// zoe by address and by name share one guess budget (2).
	f.verified(t, f.register(t, "zoe", "password of zoe"), "zoe@example.test")
	for i, name := range []string{"zoe@example.test", "zoe", "ZOE@example.test"} {
		_, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: "https://example.test", ClientID: "app", Username: name, Password: "wrong password", ClientIP: "10.9.0.1"})
		var te *accounts.ThrottledError
		if i < 2 && errors.As(err, &te) || i == 2 && !errors.As(err, &te) {
			t.Fatalf("guess %d (%s): %v", i, name, err)
		}
	}
}

package pages

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/mail"
	"github.com/guestauth/caddy-guestauth/internal/mail/smtptest"
	"github.com/guestauth/caddy-guestauth/storage"
)

// newEmailPages is newPagesWith(guestBurst) with email: mail goes out
// through the real mailer to a real SMTP server.
func newEmailPages(t *testing.T, guestBurst int, mod func(*accounts.Config)) (*Pages, *smtptest.Server) {
	t.Helper()
	srv := smtptest.Start(t, smtptest.Options{})
	p := newPagesCfg(t, guestBurst, func(st storage.Backend, cfg *accounts.Config) {
		m, err := mail.New(mail.Config{Store: st, SMTP: srv.Addr, From: "Example <noreply@app.example>", Site: "app.example",
			StartTLS: mail.StartTLSNever, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		m.Start()
		t.Cleanup(m.Stop)
		cfg.Mailer = m
		cfg.MailAddressLimit = accounts.Limit{Burst: 5, Interval: time.Hour}
		cfg.MailIPLimit = accounts.Limit{Burst: 50, Interval: time.Hour}
		if mod != nil {
			mod(cfg)
		}
	})
	return p, srv
}

// linkPath waits for the nth mail (1-based), checks its recipient and
// returns its link's path and query, which must be under the issuer's
// origin.
func linkPath(t *testing.T, srv *smtptest.Server, n int, to, page string) string {
	t.Helper()
	m := srv.Wait(t, n, 10*time.Second)[n-1]
	if len(m.To) != 1 || m.To[0] != to {
		t.Fatalf("mail %d to %v, want %s", n, m.To, to)
	}
	link := smtptest.Link(m, "https://app.example/auth/"+page+"?token=")
	if link == "" || !strings.Contains(m.HTML, link) {
		t.Fatalf("mail %d has no %s link: %q", n, page, m.Text)
	}
	return strings.TrimPrefix(link, "https://app.example")
}

func tokenOf(t *testing.T, path string) string {
	t.Helper()
	u, err := url.Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

func wantPage(t *testing.T, step string, w interface {
	Result() *http.Response
}, status int, body string, got string) {
	t.Helper()
	if w.Result().StatusCode != status || !strings.Contains(got, body) {
		t.Fatalf("%s: %d %q; want %d with %q", step, w.Result().StatusCode, got, status, body)
	}
}

// Without email, nothing of it is offered.
func TestNoEmailPages(t *testing.T) {
	b := &browser{t: t, p: newPages(t)}
	for _, page := range []string{"forgot-password", "reset-password?token=x", "email-link", "email-signin?token=x", "verify-email?token=x"} {
		w := b.do("GET", "/auth/"+page, nil, "")
		wantPage(t, page, w, 404, "There is no such page.", w.Body.String())
	}
	for _, page := range []string{"signin", "signup"} {
		if body := b.do("GET", "/auth/"+page, nil, "").Body.String(); strings.Contains(body, "email") || strings.Contains(body, "Forgot") {
			t.Fatalf("%s mentions email: %s", page, body)
		}
	}
}

// Sign up with an address, confirm it, forget the password, reset it,
// sign in with the address; the refusals on the way.
func TestEmailJourney(t *testing.T) {
	p, srv := newEmailPages(t, 5, nil)
	b := &browser{t: t, p: p}
	w := b.do("GET", "/auth/signin", nil, "")
	wantPage(t, "sign-in links", w, 200, "Forgot password?", w.Body.String())
	if !strings.Contains(w.Body.String(), "Email me a sign-in link") {
		t.Fatal("no sign-in link offer")
	}
	w = b.do("POST", "/auth/signup", url.Values{"username": {"olive"}, "password": {"correct horse"}, "email": {"not an address"}}, "same-origin")
	wantPage(t, "bad address", w, 400, `id="email-error"`, w.Body.String())
	w = b.do("POST", "/auth/signup", url.Values{"username": {"olive"}, "password": {"correct horse"}, "email": {"Olive@App.Example"}}, "same-origin")
	if w.Code != 303 || b.cookie == "" {
		t.Fatalf("sign up: %d", w.Code)
	}
	verify := linkPath(t, srv, 1, "Olive@app.example", "verify-email")
	w = b.do("GET", "/auth/account", nil, "")
	wantPage(t, "unverified on the account page", w, 200, "Olive@app.example (not verified yet", w.Body.String())
	w = b.do("GET", verify, nil, "")
	wantPage(t, "verify page", w, 200, "Confirm my email address", w.Body.String())
	before := b.cookie
	w = b.do("POST", "/auth/verify-email", url.Values{"token": {tokenOf(t, verify)}}, "same-origin")
	wantPage(t, "verified", w, 200, "Your email address Olive@app.example is confirmed.", w.Body.String())
	if b.cookie == before {
		t.Fatal("verifying did not give the owner's browser a new session")
	}
	w = b.do("POST", "/auth/verify-email", url.Values{"token": {tokenOf(t, verify)}}, "same-origin")
	wantPage(t, "verify twice", w, 400, "already used", w.Body.String())
	w = b.do("POST", "/auth/signout", url.Values{}, "same-origin")

	// Forgot password: the same page for an unknown and a known address.
	unknown := b.do("POST", "/auth/forgot-password", url.Values{"email": {"nobody@app.example"}}, "same-origin")
	known := b.do("POST", "/auth/forgot-password", url.Values{"email": {"olive@APP.example"}}, "same-origin")
	if unknown.Code != 200 || known.Code != 200 || unknown.Body.String() != known.Body.String() {
		t.Fatalf("forgot password answers differ: %d %d\n%s\n%s", unknown.Code, known.Code, unknown.Body, known.Body)
	}
	reset := linkPath(t, srv, 2, "Olive@app.example", "reset-password")
	w = b.do("GET", reset, nil, "")
	wantPage(t, "reset page", w, 200, "Set new password", w.Body.String())
	w = b.do("POST", "/auth/reset-password", url.Values{"token": {tokenOf(t, reset)}, "password": {"short"}}, "same-origin")
	wantPage(t, "short password", w, 400, `id="password-error"`, w.Body.String())
	w = b.do("POST", "/auth/reset-password", url.Values{"token": {tokenOf(t, reset)}, "password": {"battery staple"}}, "same-origin")
	if w.Code != 303 || b.cookie == "" {
		t.Fatalf("reset: %d %s", w.Code, w.Body)
	}
	w = b.do("POST", "/auth/reset-password", url.Values{"token": {tokenOf(t, reset)}, "password": {"another one"}}, "same-origin")
	wantPage(t, "reset twice", w, 400, "already used", w.Body.String())
	w = b.do("GET", reset, nil, "")
	wantPage(t, "reset page of a used link", w, 400, "already used", w.Body.String())
	w = b.do("GET", "/auth/reset-password?token=nope", nil, "")
	wantPage(t, "unknown reset link", w, 400, "invalid or has expired", w.Body.String())

	b.do("POST", "/auth/signout", url.Values{}, "same-origin")
	w = b.do("POST", "/auth/signin", url.Values{"username": {"olive@app.example"}, "password": {"battery staple"}}, "same-origin")
	if w.Code != 303 || b.cookie == "" {
		t.Fatalf("sign in by address: %d %s", w.Code, w.Body)
	}
	w = b.do("POST", "/auth/forgot-password", url.Values{"email": {"x"}}, "same-origin")
	wantPage(t, "malformed address", w, 400, `id="email-error"`, w.Body.String())
}

// A guest adds an address on the account page, confirms it, and comes
// back in a fresh browser with a sign-in link: the same user.
func TestGuestComesBackWithASignInLink(t *testing.T) {
	p, srv := newEmailPages(t, 5, nil)
	b := &browser{t: t, p: p}
	b.do("POST", "/auth/guest", url.Values{}, "same-origin")
	w := b.do("POST", "/auth/account", url.Values{"action": {"email"}, "email": {"guest@app.example"}}, "same-origin")
	wantPage(t, "add an address", w, 200, "We mailed a confirmation link to guest@app.example.", w.Body.String())
	verify := linkPath(t, srv, 1, "guest@app.example", "verify-email")
	b.do("POST", "/auth/verify-email", url.Values{"token": {tokenOf(t, verify)}}, "same-origin")
	acct := b.do("GET", "/auth/account", nil, "").Body.String()
	i := strings.Index(acct, "<code>")
	guestID := acct[i+6 : i+6+36]

	fresh := &browser{t: t, p: p}
	w = fresh.do("POST", "/auth/email-link", url.Values{"email": {"guest@app.example"}}, "same-origin")
	wantPage(t, "ask for a link", w, 200, "a link is on its way", w.Body.String())
	link := linkPath(t, srv, 2, "guest@app.example", "email-signin")
	w = fresh.do("GET", link, nil, "")
	wantPage(t, "link page", w, 200, "Sign in", w.Body.String())
	if fresh.cookie != "" {
		t.Fatal("opening the link (a GET, as mail scanners do) signed in")
	}
	w = fresh.do("POST", "/auth/email-signin", url.Values{"token": {tokenOf(t, link)}}, "same-origin")
	if w.Code != 303 || fresh.cookie == "" {
		t.Fatalf("sign in with the link: %d %s", w.Code, w.Body)
	}
	if acct := fresh.do("GET", "/auth/account", nil, "").Body.String(); !strings.Contains(acct, guestID) {
		t.Fatalf("another user: %s", acct)
	}
	w = fresh.do("POST", "/auth/email-signin", url.Values{"token": {tokenOf(t, link)}}, "same-origin")
	wantPage(t, "link twice", w, 400, "already used", w.Body.String())
	w = fresh.do("POST", "/auth/email-signin", url.Values{"token": {"x"}}, "same-origin")
	wantPage(t, "unknown link", w, 400, "invalid or has expired", w.Body.String())
}

func TestEmailPagesRateLimit(t *testing.T) {
	p, _ := newEmailPages(t, 5, func(cfg *accounts.Config) { cfg.MailAddressLimit = accounts.Limit{Burst: 1, Interval: time.Hour} })
	b := &browser{t: t, p: p}
	b.do("POST", "/auth/forgot-password", url.Values{"email": {"a@app.example"}}, "same-origin")
	w := b.do("POST", "/auth/forgot-password", url.Values{"email": {"a@app.example"}}, "same-origin")
	wantPage(t, "limit", w, 429, "Too many attempts", w.Body.String())
	if w.Header().Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
}

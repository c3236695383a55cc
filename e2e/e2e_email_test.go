package e2e

// Email over a real Caddy: mail goes through the store's outbox to a real
// SMTP server (go-smtp, internal/mail/smtptest); the links it carries
// open the pages. The Chromium journeys are in e2e_email_chromium_test.go.

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/mail/smtptest"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// startEmailSite starts the browser site with email sent to a fresh SMTP
// server, on bbolt or (postgres) a fresh PostgreSQL schema.
func startEmailSite(t *testing.T, postgres bool) (*server, *smtptest.Server) {
	t.Helper()
	smtp := smtptest.Start(t, smtptest.Options{})
	s := newServer(t)
	if postgres {
		s.DB = fmt.Sprintf("postgres %q", pgtest.DSN(t))
	}
	s.Start(s.browserSite("", fmt.Sprintf(`email {
				smtp %s
				from "Test Site <noreply@example.test>"
				starttls never
			}`, smtp.Addr)))
	return s, smtp
}

// mailLink waits for the nth mail, checks its recipient, and returns the
// path of its link to page, which is under the site's origin.
func mailLink(t *testing.T, s *server, smtp *smtptest.Server, n int, to, page string, wait time.Duration) string {
	t.Helper()
	m := smtp.Wait(t, n, wait)[n-1]
	if len(m.To) != 1 || m.To[0] != to {
		t.Fatalf("mail %d to %v, want %s", n, m.To, to)
	}
	link := smtptest.Link(m, s.Base+"/auth/"+page+"?token=")
	if link == "" || !strings.Contains(m.HTML, link) || !strings.Contains(m.Subject, "127.0.0.1") && !strings.Contains(m.Subject, "Test") {
		t.Fatalf("mail %d: no %s link under %s: %q %q", n, page, s.Base, m.Subject, m.Text)
	}
	return strings.TrimPrefix(link, s.Base)
}

func token(t *testing.T, path string) string {
	u, err := url.Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get("token")
}

func TestEmailResetThroughAnSMTPOutageBolt(t *testing.T) {
	t.Parallel()
	testEmailResetThroughAnSMTPOutage(t, false)
}

func TestEmailResetThroughAnSMTPOutagePostgres(t *testing.T) {
	t.Parallel()
	testEmailResetThroughAnSMTPOutage(t, true)
}

// Sign up with an address and confirm it; with the SMTP server down, ask
// for a reset: the answer is the same, and the mail arrives once the
// server is back; the link sets a new password, with which the address
// signs in as the same user.
func testEmailResetThroughAnSMTPOutage(t *testing.T, postgres bool) {
	s, smtp := startEmailSite(t, postgres)
	v := newVisitor(t, s)
	if r := v.post("/auth/signup", url.Values{"username": {"mallory"}, "password": {"correct horse"}, "email": {"mallory@example.test"}}); r.Status != 303 {
		t.Fatalf("sign up: %d %s", r.Status, r.Body)
	}
	id, _ := upstreamID(t, v.page("/app"))
	verify := mailLink(t, s, smtp, 1, "mallory@example.test", "verify-email", 20*time.Second)
	if r := v.post("/auth/verify-email", url.Values{"token": {token(t, verify)}}); r.Status != 200 || !strings.Contains(string(r.Body), "is confirmed") {
		t.Fatalf("verify: %d %s", r.Status, r.Body)
	}

	smtp.Stop()
	other := newVisitor(t, s)
	unknown := other.post("/auth/forgot-password", url.Values{"email": {"nobody@example.test"}})
	known := other.post("/auth/forgot-password", url.Values{"email": {"mallory@example.test"}})
	if unknown.Status != 200 || known.Status != 200 || string(unknown.Body) != string(known.Body) {
		t.Fatalf("forgot password: %d %d", unknown.Status, known.Status)
	}
	time.Sleep(2 * time.Second) // at least one attempt fails meanwhile
	if n := len(smtp.Messages()); n != 1 {
		t.Fatalf("%d mails during the outage", n)
	}
	smtp.Restart(t)
	reset := mailLink(t, s, smtp, 2, "mallory@example.test", "reset-password", 30*time.Second)
	if r := other.post("/auth/reset-password", url.Values{"token": {token(t, reset)}, "password": {"battery staple"}}); r.Status != 303 {
		t.Fatalf("reset: %d %s", r.Status, r.Body)
	}
	// The first browser's session ended with the reset.
	if got, _ := upstreamID(t, v.page("/app")); got == id {
		t.Fatal("a session from before the reset survived it")
	}
	fresh := newVisitor(t, s)
	if r := fresh.post("/auth/signin", url.Values{"username": {"Mallory@Example.test"}, "password": {"battery staple"}}); r.Status != 303 {
		t.Fatalf("sign in by address: %d %s", r.Status, r.Body)
	}
	if got, tag := upstreamID(t, fresh.page("/app")); got != id || tag != "normal-user" {
		t.Fatalf("signed in as %s (%s), want %s", got, tag, id)
	}
	if r := fresh.post("/auth/reset-password", url.Values{"token": {token(t, reset)}, "password": {"another one!"}}); r.Status != 400 || !strings.Contains(string(r.Body), "already used") {
		t.Fatalf("reset link twice: %d", r.Status)
	}
}

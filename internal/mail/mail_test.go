package mail_test

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/mail"
	"github.com/guestauth/caddy-guestauth/internal/mail/smtptest"
	"github.com/guestauth/caddy-guestauth/storage"
	_ "github.com/guestauth/caddy-guestauth/storage/bolt"
)

var bg = context.Background()

func openStore(t *testing.T) storage.Backend {
	t.Helper()
	st, err := storage.Open(bg, storage.Config{Location: filepath.Join(t.TempDir(), "mail.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

type counts struct {
	mu                   sync.Mutex
	queued, sent, failed int
	gaveUp               int
}

func (c *counts) get() (q, s, f, g int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued, c.sent, c.failed, c.gaveUp
}

func newMailer(t *testing.T, st storage.Backend, srv *smtptest.Server, mod func(*mail.Config)) (*mail.Mailer, *counts) {
	t.Helper()
	c := &counts{}
	cfg := mail.Config{
		Store: st, SMTP: srv.Addr, From: "Guest Auth <noreply@example.test>", Site: "example.test",
		StartTLS: mail.StartTLSNever, Poll: 20 * time.Millisecond, Timeout: 5 * time.Second,
		Backoff:  func(int) time.Duration { return 50 * time.Millisecond },
		OnQueued: func(string) { c.mu.Lock(); c.queued++; c.mu.Unlock() },
		OnSent:   func(string) { c.mu.Lock(); c.sent++; c.mu.Unlock() },
		OnFailed: func(_ string, g bool) {
			c.mu.Lock()
			c.failed++
			if g {
				c.gaveUp++
			}
			c.mu.Unlock()
		},
	}
	cfg.Logger = zaptest.NewLogger(t)
	if mod != nil {
		mod(&cfg)
	}
	m, err := mail.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m, c
}

func resetMail(to string) accounts.Mail {
	return accounts.Mail{Kind: accounts.MailReset, To: to, Name: "Alice", Link: "https://example.test/auth/reset-password?token=abc", ExpiresIn: time.Hour}
}

// A queued mail reaches a real SMTP server, over STARTTLS with AUTH,
// as text and HTML, and leaves the outbox.
func TestQueuedMailIsSentOverSTARTTLSWithAuth(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{TLS: true, Username: "mailer", Password: "s3cret"})
	st := openStore(t)
	m, c := newMailer(t, st, srv, func(cfg *mail.Config) {
		cfg.StartTLS = mail.StartTLSAlways
		cfg.Username, cfg.Password = "mailer", "s3cret"
		cfg.TLS = &tls.Config{RootCAs: srv.RootCAs, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	})
	m.Start()
	if err := m.Queue(bg, resetMail("alice@example.test")); err != nil {
		t.Fatal(err)
	}
	got := srv.Wait(t, 1, 10*time.Second)[0]
	if !got.TLS || got.AuthUser != "mailer" || got.From != "noreply@example.test" || len(got.To) != 1 || got.To[0] != "alice@example.test" {
		t.Fatalf("envelope: %+v", got)
	}
	if got.Subject != "Reset your password for example.test" {
		t.Fatalf("subject %q", got.Subject)
	}
	if smtptest.Link(got, "https://example.test/") != "https://example.test/auth/reset-password?token=abc" ||
		!strings.Contains(got.Text, "Hello Alice") || !strings.Contains(got.Text, "1 hour") {
		t.Fatalf("text: %q", got.Text)
	}
	if !strings.Contains(got.HTML, `<a href="https://example.test/auth/reset-password?token=abc">`) {
		t.Fatalf("html: %q", got.HTML)
	}
	waitFor(t, func() bool { n, _ := m.Pending(bg); return n == 0 })
	if q, s, f, _ := c.get(); q != 1 || s != 1 || f != 0 {
		t.Fatalf("counts queued %d sent %d failed %d", q, s, f)
	}
}

// SMTP down when the mail is queued: it is retried with backoff and
// arrives once the server is back; nothing is lost.
func TestMailWaitsOutAnSMTPOutage(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	srv.Stop()
	st := openStore(t)
	m, c := newMailer(t, st, srv, nil)
	m.Start()
	if err := m.Queue(bg, resetMail("bob@example.test")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, _, f, _ := c.get(); return f >= 2 })
	if n, _ := m.Pending(bg); n != 1 {
		t.Fatalf("pending during the outage = %d, want 1", n)
	}
	srv.Restart(t)
	got := srv.Wait(t, 1, 10*time.Second)
	if got[0].To[0] != "bob@example.test" {
		t.Fatalf("got %+v", got[0])
	}
	waitFor(t, func() bool { n, _ := m.Pending(bg); return n == 0 })
	if _, s, _, g := c.get(); s != 1 || g != 0 {
		t.Fatalf("sent %d gave up %d", s, g)
	}
}

// A mail queued by a process that stopped before sending it is sent by
// the next one using the store.
func TestMailSurvivesTheProcess(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	st := openStore(t)
	first, _ := newMailer(t, st, srv, nil) // never started
	if err := first.Queue(bg, resetMail("carol@example.test")); err != nil {
		t.Fatal(err)
	}
	second, _ := newMailer(t, st, srv, nil)
	second.Start()
	if got := srv.Wait(t, 1, 10*time.Second); got[0].To[0] != "carol@example.test" {
		t.Fatalf("got %+v", got[0])
	}
}

// After MaxAttempts failures the mail is given up, counted and dropped.
func TestMailGivenUpAfterMaxAttempts(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	srv.Stop()
	st := openStore(t)
	m, c := newMailer(t, st, srv, func(cfg *mail.Config) { cfg.MaxAttempts = 2 })
	m.Start()
	if err := m.Queue(bg, resetMail("dave@example.test")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, _, _, g := c.get(); return g == 1 })
	waitFor(t, func() bool { n, _ := m.Pending(bg); return n == 0 })
	if _, _, f, _ := c.get(); f != 2 {
		t.Fatalf("failed attempts %d, want 2", f)
	}
}

// Plain PLAIN auth to a remote host without TLS is refused by go-mail
// under auto (the password never goes out in clear by accident); STARTTLS
// always refuses a server without it.
func TestTLSPolicies(t *testing.T) {
	plain := smtptest.Start(t, smtptest.Options{})
	st := openStore(t)
	m, _ := newMailer(t, st, plain, func(cfg *mail.Config) { cfg.StartTLS = mail.StartTLSAlways })
	msg, err := m.Render(resetMail("e@example.test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Send(bg, msg); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("always against a plain server: %v", err)
	}
	tlsSrv := smtptest.Start(t, smtptest.Options{TLS: true})
	m2, _ := newMailer(t, st, tlsSrv, func(cfg *mail.Config) { cfg.StartTLS = mail.StartTLSAuto })
	if err := m2.Send(bg, msg); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("auto with an untrusted certificate must fail, not fall back: %v", err)
	}
	if len(plain.Messages())+len(tlsSrv.Messages()) != 0 {
		t.Fatal("a refused send delivered")
	}
}

func TestConfigRefusals(t *testing.T) {
	st := openStore(t)
	for _, tc := range []struct {
		name string
		cfg  mail.Config
		want string
	}{
		{"no port", mail.Config{Store: st, SMTP: "mail.example.test", From: "a@example.test"}, "host:port"},
		{"bad port", mail.Config{Store: st, SMTP: "mail.example.test:x", From: "a@example.test"}, "port"},
		{"no from", mail.Config{Store: st, SMTP: "mail.example.test:587"}, "from"},
		{"bad from", mail.Config{Store: st, SMTP: "mail.example.test:587", From: "Guest <nope"}, "from"},
		{"bad starttls", mail.Config{Store: st, SMTP: "mail.example.test:587", From: "a@example.test", StartTLS: "sometimes"}, "starttls"},
	} {
		if _, err := mail.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// Templates are overridable file by file; a broken override is refused
// when the mailer is made, not when a mail is due.
func TestTemplateOverride(t *testing.T) {
	st := openStore(t)
	srv := smtptest.Start(t, smtptest.Options{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "signin.txt"), []byte(`{{define "subject"}}Come back to {{.Site}}{{end}}Link: {{.Link}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	m, _ := newMailer(t, st, srv, func(cfg *mail.Config) { cfg.TemplatesDir = dir })
	msg, err := m.Render(accounts.Mail{Kind: accounts.MailSignIn, To: "a@example.test", Link: "https://x.test/l"})
	if err != nil {
		t.Fatal(err)
	}
	if msg.Subject != "Come back to example.test" || msg.Text != "Link: https://x.test/l" || !strings.Contains(msg.HTML, "Sign in") {
		t.Fatalf("override: %+v", msg)
	}
	// Every built-in kind renders, with the link in both parts.
	for _, k := range mail.Kinds {
		msg, err := m.Render(accounts.Mail{Kind: k, To: "a@example.test", Link: "https://x.test/l?token=q", NewEmail: "b@example.test", ExpiresIn: 24 * time.Hour})
		if err != nil || msg.Subject == "" {
			t.Fatalf("%s: %+v, %v", k, msg, err)
		}
		if k != accounts.MailChanged && (!strings.Contains(msg.Text, "https://x.test/l?token=q") || !strings.Contains(msg.HTML, "https://x.test/l?token=q")) {
			t.Fatalf("%s: no link: %+v", k, msg)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "reset.txt"), []byte(`no subject`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := mail.New(mail.Config{Store: st, SMTP: srv.Addr, From: "a@example.test", TemplatesDir: dir}); err == nil || !strings.Contains(err.Error(), "subject") {
		t.Fatalf("an override without a subject: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

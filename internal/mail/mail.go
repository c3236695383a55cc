// Package mail sends the module's mail (verification, password reset and
// sign-in links) through SMTP, durably: Queue renders the message and
// stores it in the store's outbox (the same records as the webhook
// outbox, under their own target), and every process using the store with
// email configured sends the due ones, deleting each once the SMTP server
// accepted it, or making it due again after a backoff. A process killed
// mid-send, or an SMTP server down for an hour, loses no mail: delivery is
// at least once. SMTP is go-mail's (github.com/wneessen/go-mail).
package mail

import (
	"bytes"
	"context"
	"crypto/tls"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	texttemplate "text/template"
	"time"

	"github.com/google/uuid"
	gomail "github.com/wneessen/go-mail"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Target is the outbox target of mail records: any process with email
// configured sends any of them (a webhook's target is the hex SHA-256 of
// its URL, never this).
const Target = "mail"

// StartTLS policies (Config.StartTLS).
const (
	StartTLSAuto   = "auto"   // STARTTLS when offered; its certificate must verify
	StartTLSAlways = "always" // refuse a server without STARTTLS
	StartTLSNever  = "never"  // plain SMTP (a local relay or catcher)
)

// Defaults of Config.
const (
	DefaultTimeout     = 15 * time.Second
	DefaultMaxAttempts = 16 // with the backoff below, about 8 hours of retries
	DefaultMaxAge      = 24 * time.Hour
	DefaultBatch       = 4
	DefaultPoll        = time.Second
	maxBackoff         = time.Hour
)

// Store is what the mailer needs of a store (storage.Outbox documents it).
type Store interface {
	OutboxPut(ctx context.Context, recs []storage.OutboxRecord) error
	OutboxClaim(ctx context.Context, target string, now time.Time, lease time.Duration, limit int) ([]storage.OutboxRecord, error)
	OutboxDelete(ctx context.Context, id string) error
	OutboxRetry(ctx context.Context, id string, at time.Time) error
	OutboxTrim(ctx context.Context, target string, before time.Time, maxRows int) ([]string, error)
	OutboxLen(ctx context.Context, target string) (int, error)
}

// Config configures a Mailer. Store, SMTP and From are required.
type Config struct {
	Store Store
	// SMTP is the server's host:port; port 465 is implicit TLS.
	SMTP string
	// From is the sender, "Name <address>" or an address.
	From string
	// Username and Password authenticate (SMTP AUTH, PLAIN or LOGIN as
	// the server offers) when Username is set.
	Username, Password string
	// StartTLS is one of the StartTLS* policies (auto when empty).
	StartTLS string
	// TLS, when set, is the TLS configuration (tests trust their own CA
	// with it); its ServerName is set to the SMTP host when empty.
	TLS *tls.Config
	// Site names the site in the mail ("example.com").
	Site string
	// TemplatesDir, when set, holds templates that override the built-in
	// ones file by file (<kind>.txt, <kind>.html).
	TemplatesDir string
	Timeout      time.Duration
	MaxAttempts  int
	// MaxAge drops a mail not sent after this long (its links have
	// expired by then).
	MaxAge time.Duration
	Batch  int
	Poll   time.Duration
	// Backoff is the wait after the nth failed attempt (exponential with
	// jitter, up to an hour, when nil).
	Backoff func(n int) time.Duration
	Now     func() time.Time
	Logger  *zap.Logger
	// OnQueued, OnSent and OnFailed count mail stored, accepted by the
	// SMTP server, and attempts that failed (gaveUp: the last one, the mail
	// is dropped). They must not block.
	OnQueued, OnSent func(kind string)
	OnFailed         func(kind string, gaveUp bool)
}

// Message is a rendered mail, as stored in the outbox record's body.
type Message struct {
	Kind    string `json:"kind"`
	To      string `json:"to"`
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html"`
}

//go:embed templates
var builtin embed.FS

// Kinds are the mail kinds with templates.
var Kinds = []string{accounts.MailVerify, accounts.MailChanged, accounts.MailReset, accounts.MailSignIn}

type kindTemplates struct {
	text *texttemplate.Template
	html *htmltemplate.Template
}

// Mailer queues and sends mail; it is an accounts.Mailer.
type Mailer struct {
	cfg   Config
	host  string
	port  int
	tmpl  map[string]kindTemplates
	wake  chan struct{}
	mu    sync.Mutex
	stop  context.CancelFunc
	done  chan struct{}
	lease time.Duration
}

var _ accounts.Mailer = (*Mailer)(nil)

// New checks cfg and parses the templates; Start starts sending.
func New(cfg Config) (*Mailer, error) {
	if cfg.Store == nil {
		return nil, errors.New("mail: a store is required")
	}
	host, portStr, err := net.SplitHostPort(cfg.SMTP)
	if err != nil || host == "" {
		return nil, fmt.Errorf("mail: smtp must be host:port, got %q", cfg.SMTP)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("mail: bad smtp port %q", portStr)
	}
	if err := CheckFrom(cfg.From); err != nil {
		return nil, err
	}
	switch cfg.StartTLS {
	case "":
		cfg.StartTLS = StartTLSAuto
	case StartTLSAuto, StartTLSAlways, StartTLSNever:
	default:
		return nil, fmt.Errorf("mail: starttls must be auto, always or never, got %q", cfg.StartTLS)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Poll <= 0 {
		cfg.Poll = DefaultPoll
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Site == "" {
		cfg.Site = host
	}
	tmpl, err := loadTemplates(cfg.TemplatesDir)
	if err != nil {
		return nil, err
	}
	return &Mailer{cfg: cfg, host: host, port: port, tmpl: tmpl, wake: make(chan struct{}, 1),
		lease: cfg.Timeout*time.Duration(cfg.Batch) + 5*time.Second}, nil
}

// CheckFrom checks a sender address ("Name <address>" or an address).
func CheckFrom(from string) error {
	m := gomail.NewMsg()
	if from == "" || m.From(from) != nil {
		return fmt.Errorf("mail: from must be an address or \"Name <address>\", got %q", from)
	}
	return nil
}

// DefaultBackoff waits 5s after the first failure, doubling up to an
// hour, with jitter (half to all of it): a short SMTP hiccup delays a
// reset link by seconds, a long outage costs few attempts.
func DefaultBackoff(n int) time.Duration {
	d := maxBackoff
	if n < 11 {
		d = min(5*time.Second<<max(n-1, 0), maxBackoff)
	}
	return d/2 + rand.N(d/2+1) //nolint:gosec // G404: retry jitter needs no cryptographic randomness
}

// loadTemplates parses each kind's templates, the file of the same name
// in dir overriding the built-in one.
func loadTemplates(dir string) (map[string]kindTemplates, error) {
	var owner fs.FS
	if dir != "" {
		owner = os.DirFS(dir) // fixed names: nothing outside dir is read
	}
	read := func(name string) ([]byte, error) {
		if owner != nil {
			b, err := fs.ReadFile(owner, name)
			if err == nil {
				return b, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		return builtin.ReadFile("templates/" + name)
	}
	out := map[string]kindTemplates{}
	for _, k := range Kinds {
		txt, err := read(k + ".txt")
		if err != nil {
			return nil, err
		}
		html, err := read(k + ".html")
		if err != nil {
			return nil, err
		}
		tt, err := texttemplate.New(k).Option("missingkey=error").Parse(string(txt))
		if err != nil {
			return nil, fmt.Errorf("mail template %s.txt: %w", k, err)
		}
		if tt.Lookup("subject") == nil {
			return nil, fmt.Errorf("mail template %s.txt: no {{define \"subject\"}}", k)
		}
		ht, err := htmltemplate.New(k).Option("missingkey=error").Parse(string(html))
		if err != nil {
			return nil, fmt.Errorf("mail template %s.html: %w", k, err)
		}
		out[k] = kindTemplates{text: tt, html: ht}
	}
	return out, nil
}

// tmplData is what the templates see.
type tmplData struct {
	Site, To, Name, Link, NewEmail, ExpiresIn string
}

func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d%time.Hour == 0 && d >= 2*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " hours"
	case d == time.Hour:
		return "1 hour"
	default:
		return strconv.Itoa(int((d+time.Minute-1)/time.Minute)) + " minutes"
	}
}

// Render renders m with its kind's templates.
func (ml *Mailer) Render(m accounts.Mail) (*Message, error) {
	t, ok := ml.tmpl[m.Kind]
	if !ok {
		return nil, fmt.Errorf("mail: unknown kind %q", m.Kind)
	}
	d := tmplData{Site: ml.cfg.Site, To: m.To, Name: m.Name, Link: m.Link, NewEmail: m.NewEmail, ExpiresIn: humanDuration(m.ExpiresIn)}
	var subj, text, html bytes.Buffer
	if err := t.text.ExecuteTemplate(&subj, "subject", d); err != nil {
		return nil, fmt.Errorf("mail %s subject: %w", m.Kind, err)
	}
	if err := t.text.Execute(&text, d); err != nil {
		return nil, fmt.Errorf("mail %s text: %w", m.Kind, err)
	}
	if err := t.html.Execute(&html, d); err != nil {
		return nil, fmt.Errorf("mail %s html: %w", m.Kind, err)
	}
	return &Message{Kind: m.Kind, To: m.To, Subject: subj.String(), Text: text.String(), HTML: html.String()}, nil
}

// Queue implements accounts.Mailer: m is rendered and stored; once it
// returns nil the mail will be sent.
func (ml *Mailer) Queue(ctx context.Context, m accounts.Mail) error {
	msg, err := ml.Render(m)
	if err != nil {
		return err
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	rec := storage.OutboxRecord{ID: uuid.NewString(), Type: "mail." + m.Kind, Target: Target, Body: body, CreatedAt: ml.cfg.Now()}
	if err := ml.cfg.Store.OutboxPut(ctx, []storage.OutboxRecord{rec}); err != nil {
		return err
	}
	if ml.cfg.OnQueued != nil {
		ml.cfg.OnQueued(m.Kind)
	}
	ml.Nudge()
	return nil
}

// Nudge wakes the sending loop; it never waits.
func (ml *Mailer) Nudge() {
	select {
	case ml.wake <- struct{}{}:
	default:
	}
}

// Pending is how many mails wait in the store (all processes').
func (ml *Mailer) Pending(ctx context.Context) (int, error) {
	return ml.cfg.Store.OutboxLen(ctx, Target)
}

// Start starts sending; calling it again does nothing until Stop.
func (ml *Mailer) Start() {
	ml.mu.Lock()
	defer ml.mu.Unlock()
	if ml.stop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	ml.stop, ml.done = cancel, make(chan struct{})
	go ml.run(ctx, ml.done)
}

// Stop stops sending: a mail being sent is cut short and sent again after
// its lease, by this process or another.
func (ml *Mailer) Stop() {
	ml.mu.Lock()
	stop, done := ml.stop, ml.done
	ml.stop = nil
	ml.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

func (ml *Mailer) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	lastTrim := time.Time{}
	for {
		now := ml.cfg.Now()
		if now.Sub(lastTrim) > time.Minute {
			lastTrim = now
			ml.trim(ctx, now)
		}
		n := ml.sendDue(ctx)
		if ctx.Err() != nil {
			return
		}
		if n == ml.cfg.Batch {
			continue // maybe more due
		}
		t := time.NewTimer(ml.cfg.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-ml.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func (ml *Mailer) trim(ctx context.Context, now time.Time) {
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dropped, err := ml.cfg.Store.OutboxTrim(tctx, Target, now.Add(-ml.cfg.MaxAge), 0)
	if err != nil {
		ml.cfg.Logger.Warn("mail outbox: trimming failed", zap.Error(err))
		return
	}
	for _, typ := range dropped {
		ml.cfg.Logger.Error("mail outbox: a mail was not sent in time; dropped", zap.String("type", typ))
		if ml.cfg.OnFailed != nil {
			ml.cfg.OnFailed(kindOf(typ), true)
		}
	}
}

func kindOf(typ string) string {
	if len(typ) > 5 && typ[:5] == "mail." {
		return typ[5:]
	}
	return typ
}

// sendDue claims and sends one batch of due mail; it returns how many it
// claimed.
func (ml *Mailer) sendDue(ctx context.Context) int {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	recs, err := ml.cfg.Store.OutboxClaim(cctx, Target, ml.cfg.Now(), ml.lease, ml.cfg.Batch)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			ml.cfg.Logger.Warn("mail outbox: claiming failed", zap.Error(err))
		}
		return 0
	}
	for _, rec := range recs {
		if ctx.Err() != nil {
			return len(recs) // leased: sent after the lease
		}
		ml.deliver(ctx, rec)
	}
	return len(recs)
}

func (ml *Mailer) deliver(ctx context.Context, rec storage.OutboxRecord) {
	var msg Message
	kind := kindOf(rec.Type)
	if err := json.Unmarshal(rec.Body, &msg); err != nil {
		ml.cfg.Logger.Error("mail outbox: undecodable record; dropped", zap.String("id", rec.ID), zap.Error(err))
		ml.finish(rec.ID)
		if ml.cfg.OnFailed != nil {
			ml.cfg.OnFailed(kind, true)
		}
		return
	}
	err := ml.Send(ctx, &msg)
	if err == nil {
		if ml.cfg.OnSent != nil {
			ml.cfg.OnSent(kind)
		}
		ml.finish(rec.ID)
		return
	}
	if ctx.Err() != nil {
		return // stopping: the lease ends and it is sent again
	}
	gaveUp := rec.Attempts >= ml.cfg.MaxAttempts
	if ml.cfg.OnFailed != nil {
		ml.cfg.OnFailed(kind, gaveUp)
	}
	// The address is personal data: the log names the record, not it.
	if gaveUp {
		ml.cfg.Logger.Error("mail: sending failed; given up", zap.String("id", rec.ID), zap.String("type", rec.Type), zap.Int("attempts", rec.Attempts), zap.Error(err))
		ml.finish(rec.ID)
		return
	}
	wait := ml.cfg.Backoff(rec.Attempts)
	ml.cfg.Logger.Warn("mail: sending failed; will retry", zap.String("id", rec.ID), zap.String("type", rec.Type), zap.Int("attempts", rec.Attempts), zap.Duration("retry_in", wait), zap.Error(err))
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := ml.cfg.Store.OutboxRetry(rctx, rec.ID, ml.cfg.Now().Add(wait)); err != nil {
		ml.cfg.Logger.Warn("mail outbox: rescheduling failed; retried after the lease", zap.String("id", rec.ID), zap.Error(err))
	}
}

// finish deletes a record sent or given up; a delete lost to an outage
// sends the mail again after its lease (at least once).
func (ml *Mailer) finish(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ml.cfg.Store.OutboxDelete(ctx, id); err != nil {
		ml.cfg.Logger.Warn("mail outbox: deleting a sent mail failed; it may be sent again", zap.String("id", id), zap.Error(err))
	}
}

// Send sends msg now, through the SMTP server (one connection).
func (ml *Mailer) Send(ctx context.Context, msg *Message) error {
	m := gomail.NewMsg()
	if err := m.From(ml.cfg.From); err != nil {
		return err
	}
	if err := m.To(msg.To); err != nil {
		return err
	}
	m.Subject(msg.Subject)
	m.SetDate()
	m.SetMessageID()
	m.SetBodyString(gomail.TypeTextPlain, msg.Text)
	m.AddAlternativeString(gomail.TypeTextHTML, msg.HTML)
	c, err := gomail.NewClient(ml.host, ml.clientOptions()...)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, ml.cfg.Timeout)
	defer cancel()
	return c.DialAndSendWithContext(sctx, m)
}

func (ml *Mailer) clientOptions() []gomail.Option {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if ml.cfg.TLS != nil {
		tc = ml.cfg.TLS.Clone()
	}
	if tc.ServerName == "" {
		tc.ServerName = ml.host
	}
	opts := []gomail.Option{gomail.WithPort(ml.port), gomail.WithTimeout(ml.cfg.Timeout), gomail.WithTLSConfig(tc)}
	switch {
	case ml.port == 465:
		opts = append(opts, gomail.WithSSL())
	case ml.cfg.StartTLS == StartTLSAlways:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	case ml.cfg.StartTLS == StartTLSNever:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	}
	if ml.cfg.Username != "" {
		auth := gomail.SMTPAuthAutoDiscover
		if ml.cfg.StartTLS == StartTLSNever && ml.port != 465 {
			// The operator chose plain SMTP: go-mail refuses PLAIN without
			// TLS unless told so.
			auth = gomail.SMTPAuthPlainNoEnc
		}
		opts = append(opts, gomail.WithSMTPAuth(auth), gomail.WithUsername(ml.cfg.Username), gomail.WithPassword(ml.cfg.Password))
	}
	return opts
}

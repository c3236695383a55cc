package caddymodule

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
	"github.com/guestauth/caddy-guestauth/internal/mail"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
)

// Email turns on verified email addresses, password recovery and email
// sign-in links (docs/email.md). Without it nothing about email is
// offered, and the pages say nothing of it. Mail is queued in the store
// (the outbox every instance using the store sends from), so a restart or
// an SMTP outage loses none: a failed attempt is retried after 5s,
// doubling up to an hour, 16 attempts in all. Needs browser: the mailed
// links open its pages.
type Email struct {
	// SMTP server, host:port. Port 465 is implicit TLS; any other port
	// speaks STARTTLS as StartTLS says.
	SMTP string `json:"smtp"`
	// Sender of the mail: `"Name <address>"` or an address.
	From string `json:"from"`
	// Username and Password for SMTP AUTH (optional; write them as
	// {env.NAME} placeholders, resolved when the config loads).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// StartTLS is auto (default: STARTTLS when the server offers it, and
	// its certificate must then verify), always (refuse a server without
	// it) or never (plain SMTP, for a relay or catcher on the same host).
	StartTLS string `json:"starttls,omitempty"`
	// Templates is a directory of mail templates overriding the built-in
	// ones file by file: verify, changed, reset, signin, each as .txt
	// (text/template, with {{define "subject"}}) and .html (html/template).
	Templates string `json:"templates,omitempty"`
	// Mail a visitor can have sent (verification, reset and sign-in
	// links) per address and per client network (see ip_key_prefix);
	// every request counts, answered or not. Defaults: 3 then one per
	// 20m per address; 10 then one per 1m per network.
	AddressLimit *RateLimit `json:"address_limit,omitempty"`
	IPLimit      *RateLimit `json:"ip_limit,omitempty"`
}

func (e *Email) setDefaults() {
	if e.StartTLS == "" {
		e.StartTLS = mail.StartTLSAuto
	}
	if e.AddressLimit == nil {
		e.AddressLimit = &RateLimit{Burst: 3, Interval: caddy.Duration(20 * time.Minute)}
	}
	if e.IPLimit == nil {
		e.IPLimit = &RateLimit{Burst: 10, Interval: caddy.Duration(time.Minute)}
	}
}

func (e *Email) validate() error {
	host, port, err := net.SplitHostPort(e.SMTP)
	if err != nil || host == "" {
		return fmt.Errorf("email: smtp must be host:port, got %q", e.SMTP)
	}
	if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
		return fmt.Errorf("email: bad smtp port %q", port)
	}
	if err := mail.CheckFrom(e.From); err != nil {
		return fmt.Errorf("email: %w", err)
	}
	switch e.StartTLS {
	case mail.StartTLSAuto, mail.StartTLSAlways, mail.StartTLSNever:
	default:
		return fmt.Errorf("email: starttls must be auto, always or never, got %q", e.StartTLS)
	}
	for name, l := range map[string]*RateLimit{"address_limit": e.AddressLimit, "ip_limit": e.IPLimit} {
		if l.Burst <= 0 || l.Interval <= 0 {
			return fmt.Errorf("email: %s needs a positive burst and interval", name)
		}
	}
	return nil
}

// parseEmail reads `email { smtp; from; username; password; starttls;
// templates; limit address|ip <burst> <interval> }`.
func parseEmail(d *caddyfile.Dispenser) (*Email, error) {
	e := &Email{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	var opts caddyopt.Block // each option at most once
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch key := d.Val(); key {
		case "smtp":
			err = opts.String(d, &e.SMTP)
		case "from":
			err = opts.String(d, &e.From)
		case "username":
			err = opts.String(d, &e.Username)
		case "password":
			err = opts.String(d, &e.Password)
		case "starttls":
			err = opts.String(d, &e.StartTLS)
		case "templates":
			err = opts.String(d, &e.Templates)
		case "limit":
			err = e.unmarshalLimit(d, &opts)
		default:
			err = d.Errf("unknown email option %q", key)
		}
		if err != nil {
			return nil, err
		}
	}
	return e, nil
}

// unmarshalLimit reads `limit address|ip <burst> <interval>`.
func (e *Email) unmarshalLimit(d *caddyfile.Dispenser, opts *caddyopt.Block) error {
	var which, burst, interval string
	if !d.AllArgs(&which, &burst, &interval) {
		return d.ArgErr()
	}
	var target **RateLimit
	switch which {
	case "address":
		target = &e.AddressLimit
	case "ip":
		target = &e.IPLimit
	default:
		return d.Errf("email limit: unknown limit %q (address or ip)", which)
	}
	if err := opts.Once(d, "limit "+which); err != nil {
		return err
	}
	n, err := strconv.Atoi(burst)
	if err != nil {
		return d.Errf("limit burst: %v", err)
	}
	dur, err := caddy.ParseDuration(interval)
	if err != nil {
		return d.Errf("limit interval: %v", err)
	}
	*target = &RateLimit{Burst: n, Interval: caddy.Duration(dur)}
	return nil
}

// setupMail makes the mailer of the email option (nil without it). Its
// site name is the browser's site_name, else the issuer's host.
func (g *GuestAuth) setupMail() (*mail.Mailer, error) {
	e := g.Email
	if e == nil {
		return nil, nil
	}
	repl := caddy.NewReplacer()
	site := ""
	if g.Browser != nil {
		site = g.Browser.SiteName
	}
	if site == "" && g.issuer != "" {
		if u, err := url.Parse(g.issuer); err == nil {
			site = u.Host
		}
	}
	return mail.New(mail.Config{
		Store: g.shared.store, SMTP: e.SMTP, From: e.From,
		Username: repl.ReplaceKnown(e.Username, ""), Password: repl.ReplaceKnown(e.Password, ""),
		StartTLS: e.StartTLS, Site: site, TemplatesDir: e.Templates,
		Logger: g.logger.Named("mail"), Now: g.now,
		OnQueued: metrics.MailQueued, OnSent: metrics.MailSent, OnFailed: metrics.MailFailed,
	})
}

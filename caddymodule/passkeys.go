package caddymodule

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
)

// BrowserPasskeys turns on passkeys (WebAuthn) on the browser pages: a
// guest saves its account with a passkey from the account or sign-up page
// and becomes a member with the same id, no password needed; the sign-in
// page signs in with a passkey without a username (merging a current
// guest, like any sign-in); members list, name and remove their passkeys
// on the account page. The page origin is the issuer's (the request's
// when no issuer is set); browsers allow WebAuthn on https origins and on
// http://localhost only.
type BrowserPasskeys struct {
	// The relying-party id passkeys are bound to: the issuer's host name
	// (the request's host without the port when no issuer is set) unless
	// set. A passkey works on every site whose host is this domain or a
	// subdomain of it, so set it to the parent domain to share passkeys
	// between sibling sites; it cannot be an IP address. Changing it
	// later makes every saved passkey unusable.
	RPID string `json:"rp_id,omitempty"`
}

// parsePasskeys reads `passkeys` alone or with a block of options.
func parsePasskeys(d *caddyfile.Dispenser) (*BrowserPasskeys, error) {
	p := &BrowserPasskeys{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	var opts caddyopt.Block
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch key := d.Val(); key {
		case "rp_id":
			err = opts.String(d, &p.RPID)
		default:
			err = d.Errf("unknown passkeys option %q", key)
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// validate checks rp_id against the configured issuer (none: each
// request's host, checked by the browser).
func (p *BrowserPasskeys) validate(issuer string) error {
	if _, err := accounts.NewPasskeys(nil, nil, accounts.PasskeyConfig{RPID: p.RPID}); err != nil {
		return fmt.Errorf("browser %w", err) // "browser passkeys: rp_id ..."
	}
	if p.RPID == "" || issuer == "" {
		return nil
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return err
	}
	host, rp := strings.ToLower(u.Hostname()), strings.ToLower(p.RPID)
	if host != rp && !strings.HasSuffix(host, "."+rp) {
		return fmt.Errorf("browser passkeys: rp_id %q must be the issuer's host %q or a parent domain of it", p.RPID, host)
	}
	return nil
}

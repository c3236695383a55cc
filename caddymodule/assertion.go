package caddymodule

import (
	"errors"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
	"github.com/guestauth/caddy-guestauth/internal/headers"
)

// Assertion adds a signed identity header to every proxied request that
// has a user (Bearer or browser session): a JWT (typ assertion+jwt) with
// iss, aud (the site), sub, name, tag, is_anonymous, iat and exp, signed
// with the module's token key and verifiable from its JWKS, so an app that
// can also be reached by other paths can verify who a request is from.
// Assertions are cached per user version and site, re-signed when half
// their lifetime is gone (internal/headers). Off when unset.
type Assertion struct {
	// Header carrying the JWT. Default: X-Auth-Assertion. Client copies
	// are always stripped, and X-Auth-Assertion is stripped by every
	// guest_auth handler, with or without an assertion.
	Header string `json:"header,omitempty"`
	// How long an assertion is valid, 1s to 60s. Default: 60s.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
	// The aud claim. Default: the site's origin (scheme://host of the
	// issuer, or of each request).
	Audience string `json:"audience,omitempty"`

	signer *headers.Assertion
}

func (a *Assertion) setDefaults() {
	orDefault(&a.Header, headers.DefaultAssertion)
	a.Header = http.CanonicalHeaderKey(a.Header)
	orDefault(&a.Lifetime, caddy.Duration(time.Minute))
}

func (a *Assertion) validate() error {
	if a.Lifetime < caddy.Duration(time.Second) || a.Lifetime > caddy.Duration(time.Minute) {
		return errors.New("assertion lifetime must be between 1s and 60s")
	}
	return nil
}

// parseAssertion reads `assertion [{ header; lifetime; audience }]`.
func parseAssertion(d *caddyfile.Dispenser) (*Assertion, error) {
	a := &Assertion{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	var opts caddyopt.Block
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch key := d.Val(); key {
		case "header":
			err = opts.String(d, &a.Header)
		case "audience":
			err = opts.String(d, &a.Audience)
		case "lifetime":
			err = opts.Duration(d, &a.Lifetime)
		default:
			err = d.Errf("unknown assertion option %q", key)
		}
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

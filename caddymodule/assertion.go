package caddymodule

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// Assertion adds a signed identity header to every proxied request that
// has a user (Bearer or browser session): a JWT (typ assertion+jwt) with
// iss, aud (the site), sub, name, tag, is_anonymous, iat and exp, signed
// with the module's token key and verifiable from its JWKS, so an app that
// can also be reached by other paths can verify who a request is from.
// Assertions are cached per user version and site, re-signed when half
// their lifetime is gone. Off when unset.
type Assertion struct {
	// Header carrying the JWT. Default: X-Auth-Assertion. Client copies
	// are always stripped.
	Header string `json:"header,omitempty"`
	// How long an assertion is valid, 1s to 60s. Default: 60s.
	Lifetime caddy.Duration `json:"lifetime,omitempty"`
	// The aud claim. Default: the site's origin (scheme://host of the
	// issuer, or of each request).
	Audience string `json:"audience,omitempty"`

	mu    sync.Mutex
	cache map[assertionKey]assertionEntry
}

type assertionKey struct {
	user, aud, iss string
	version        int64 // User.UpdatedAt: a rename or upgrade re-signs
}

type assertionEntry struct {
	jwt     string
	renewAt time.Time
}

// maxAssertions bounds the cache; when full it starts over.
const maxAssertions = 10_000

func (a *Assertion) setDefaults() {
	if a.Header == "" {
		a.Header = "X-Auth-Assertion"
	}
	a.Header = http.CanonicalHeaderKey(a.Header)
	if a.Lifetime == 0 {
		a.Lifetime = caddy.Duration(time.Minute)
	}
}

func (a *Assertion) validate() error {
	if a.Lifetime < caddy.Duration(time.Second) || a.Lifetime > caddy.Duration(time.Minute) {
		return errors.New("assertion lifetime must be between 1s and 60s")
	}
	return nil
}

// setAssertion sets the assertion header for u on r.
func (g *GuestAuth) setAssertion(r *http.Request, u *model.User) error {
	a := g.Assertion
	if a == nil {
		return nil
	}
	aud := a.Audience
	if aud == "" {
		aud = g.originFor(r)
	}
	iss := g.issuerFor(r)
	key := assertionKey{user: u.ID, aud: aud, iss: iss, version: u.UpdatedAt.UnixNano()}
	now := g.now()
	a.mu.Lock()
	e, ok := a.cache[key]
	a.mu.Unlock()
	if !ok || !now.Before(e.renewAt) {
		iat := now.Truncate(time.Second)
		life := time.Duration(a.Lifetime).Round(time.Second)
		jwt, err := g.shared.keys.SignAssertion(g.alg, tokens.Assertion{
			Issuer: iss, Audience: aud, Subject: u.ID, Name: u.Name, Tag: u.Tag,
			Anonymous: u.IsAnonymous(), IssuedAt: iat, Expires: iat.Add(life),
		})
		if err != nil {
			return err
		}
		e = assertionEntry{jwt: jwt, renewAt: iat.Add(life / 2)}
		a.mu.Lock()
		if a.cache == nil || len(a.cache) >= maxAssertions {
			a.cache = map[assertionKey]assertionEntry{}
		}
		a.cache[key] = e
		a.mu.Unlock()
	}
	r.Header.Set(a.Header, e.jwt)
	return nil
}

// parseAssertion reads `assertion [{ header; lifetime; audience }]`.
func parseAssertion(d *caddyfile.Dispenser) (*Assertion, error) {
	a := &Assertion{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		var v string
		if !d.AllArgs(&v) {
			return nil, d.ArgErr()
		}
		switch key {
		case "header":
			a.Header = v
		case "audience":
			a.Audience = v
		case "lifetime":
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return nil, d.Errf("%s: %v", key, err)
			}
			a.Lifetime = caddy.Duration(dur)
		default:
			return nil, d.Errf("unknown assertion option %q", key)
		}
	}
	return a, nil
}

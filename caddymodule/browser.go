package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
	"github.com/guestauth/caddy-guestauth/internal/pages"
)

// Browser turns on browser sessions: guest_auth sets its own session cookie
// and serves sign-up, sign-in, sign-out, account and continue-as-guest
// pages, so a server-rendered app gets guests, accounts and identity
// headers for browser visitors with no auth code of its own.
//
// The cookie holds an opaque handle (a session id, its user id and a
// 256-bit MAC keyed by the session's random key) bound to a stored session,
// never a token: signing out, revoking or deleting the user ends it on the
// next request, and there is no refresh token to race over. It is
// HttpOnly, SameSite=Lax, Path=/, host-only, and on an HTTPS site Secure
// with the `__Host-` prefix (see CookieSecure). Every privilege change (a
// sign-in, a guest's sign-up, a password set or changed) replaces it with a
// new session's, and the old one ends at once (no session fixation). It is
// honoured under the issuer its session was started under only. It lasts
// as long as its session: session_idle_timeout
// (sliding; the store is written, and the cookie re-sent, at most every 5
// minutes per session) and session_lifetime (absolute). It is removed from
// the Cookie header sent upstream. An invalid, expired or revoked cookie is
// cleared and the request goes on without a session.
//
// A request with an Authorization header is a Bearer request as before;
// the JSON API never reads the cookie.
type Browser struct {
	// Name of the session cookie. Default: guestauth_session (sent as
	// __Host-guestauth_session when Secure, see cookie_secure).
	CookieName string `json:"cookie_name,omitempty"`

	// When the session cookie is Secure, with the `__Host-` prefix (which
	// browsers accept only Secure, host-only and Path=/, so a sibling
	// subdomain or a plain-HTTP response cannot plant one): `auto`
	// (default) when the site is HTTPS — the configured issuer is an https
	// URL, the request came over TLS, or a proxy the server's
	// trusted_proxies trust says it arrived over HTTPS (its last
	// X-Forwarded-Proto); `always`; or `never` (plain-HTTP development
	// only). The cookie is read under the name the same rule gives for the
	// request and no other: on an HTTPS site a cookie without the prefix is
	// no session. Behind a TLS-terminating proxy set the issuer (or
	// trusted_proxies), or the cookie loses both protections.
	CookieSecure string `json:"cookie_secure,omitempty"`

	// Path prefix of the built-in pages (signup, signin, signout, account,
	// guest). Default: /auth/.
	PagesPrefix string `json:"pages_prefix,omitempty"`

	// The site's name, shown in the title and at the top of every page, as
	// a link to `home`. Default: the request's host name (without the
	// port).
	SiteName string `json:"site_name,omitempty"`

	// The app's address, linked from every page, and where a browser goes
	// after deleting its account: a path of this site (such as /app/) or
	// an absolute http(s) URL. Default: /.
	Home string `json:"home,omitempty"`

	// Requests matching any of these matcher sets, from a visitor without
	// a session, create a guest and set the cookie; that same request
	// reaches the upstream with the new guest's identity. Unset: guests
	// are created only by the continue-as-guest page. Creation obeys
	// guest_limit and max_live_guests: a refused one lets the request go on
	// without identity, or, when `require` demands one, shows a 429 page.
	CreateGuestRaw caddyhttp.RawMatcherSets `json:"create_guest,omitempty" caddy:"namespace=http.matchers"`

	// A guest created for a browser whose cookie never comes back on a
	// later request (crawlers, clients without cookies) is deleted after
	// this long (its first session ends then, and the orphan is pruned at
	// the next sweep). Default: 1h. 0 gives such sessions the normal idle
	// timeout.
	UnconfirmedGuestTTL *caddy.Duration `json:"unconfirmed_guest_ttl,omitempty"`

	// Directory of templates overriding the built-in ones (signin.html,
	// signup.html, signout.html, account.html, guest.html, error.html,
	// layout.html, by name; html/template syntax) and of an optional
	// style.css linked from every page after the built-in stylesheet.
	Templates string `json:"templates,omitempty"`

	// Header telling the upstream, on the first proxied request of a
	// session signed in from a guest session, which guest it was (so the
	// app can move the guest's data). Default: X-Auth-Merged-From. Client
	// copies are always stripped.
	MergedHeader string `json:"merged_header,omitempty"`

	// Other OpenID Connect providers to sign in with, one "Continue with"
	// button each, in this order (see BrowserProvider).
	Providers []*BrowserProvider `json:"providers,omitempty"`

	// Passkeys turns on passkeys (see BrowserPasskeys); off unless given.
	Passkeys *BrowserPasskeys `json:"passkeys,omitempty"`

	// Usernames of the members who may open the dashboard at
	// <pages_prefix>admin/ (population, conversion and users; see
	// docs/dashboard.md), signed in by any method. Anyone else gets 404
	// there. Unset: no dashboard.
	Admins []string `json:"admins,omitempty"`

	createGuest caddyhttp.MatcherSets
	templates   *pages.Templates
	providers   []pages.Provider
}

const defaultBrowserCookie = "guestauth_session"

func (b *Browser) setDefaults() {
	orDefault(&b.CookieName, defaultBrowserCookie)
	orDefault(&b.CookieSecure, pages.SecureAuto)
	orDefault(&b.PagesPrefix, "/auth/")
	orDefault(&b.Home, "/")
	if !strings.HasSuffix(b.PagesPrefix, "/") {
		b.PagesPrefix += "/"
	}
	newDefault(&b.UnconfirmedGuestTTL, caddy.Duration(time.Hour))
	orDefault(&b.MergedHeader, MergedFromHeader)
	b.MergedHeader = http.CanonicalHeaderKey(b.MergedHeader)
}

func (b *Browser) provision(ctx caddy.Context) error {
	if b.CreateGuestRaw != nil {
		mods, err := ctx.LoadModule(b, "CreateGuestRaw")
		if err != nil {
			return fmt.Errorf("browser create_guest matchers: %w", err)
		}
		if err := b.createGuest.FromInterface(mods); err != nil {
			return err
		}
	}
	t, err := pages.Load(b.Templates)
	if err != nil {
		return fmt.Errorf("browser templates: %w", err)
	}
	b.templates = t
	for _, p := range b.Providers {
		rp, err := p.build()
		if err != nil {
			return fmt.Errorf("browser %w", err)
		}
		b.providers = append(b.providers, pages.Provider{RP: rp, Label: p.label()})
	}
	return nil
}

func (b *Browser) validate() error {
	if *b.UnconfirmedGuestTTL < 0 {
		return errors.New("browser unconfirmed_guest_ttl cannot be negative")
	}
	for _, name := range b.Admins {
		if err := accounts.ValidateName(name); err != nil {
			return fmt.Errorf("browser admins: %q is not a username: %w", name, err)
		}
	}
	if err := validateProviders(b.Providers); err != nil {
		return err
	}
	return (&pages.Pages{Prefix: b.PagesPrefix, CookieName: b.CookieName, CookieSecure: b.CookieSecure, SiteName: b.SiteName, Home: b.Home}).CheckConfig()
}

// parseBrowser reads the `browser` block. create_guest takes a matcher
// token (`@name`, `*` or a path), resolved against the site's named
// matchers, so it needs the Caddyfile helper.
func parseBrowser(d *caddyfile.Dispenser, h *httpcaddyfile.Helper) (*Browser, error) {
	b := &Browser{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	var opts caddyopt.Block
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch key := d.Val(); key {
		case "cookie_name":
			err = opts.String(d, &b.CookieName)
		case "cookie_secure":
			err = opts.String(d, &b.CookieSecure)
		case "pages_prefix":
			err = opts.String(d, &b.PagesPrefix)
		case "site_name":
			err = opts.String(d, &b.SiteName)
		case "home":
			err = opts.String(d, &b.Home)
		case "templates":
			err = opts.String(d, &b.Templates)
		case "merged_header":
			err = opts.String(d, &b.MergedHeader)
		case "unconfirmed_guest_ttl":
			err = opts.DurationPtr(d, &b.UnconfirmedGuestTTL)
		case "create_guest": // repeatable: any of the matchers
			err = b.unmarshalCreateGuest(d, h)
		case "provider": // repeatable: one block per provider
			var p *BrowserProvider
			if p, err = parseBrowserProvider(d); err == nil {
				b.Providers = append(b.Providers, p)
			}
		case "passkeys":
			if err = opts.Once(d, key); err == nil {
				b.Passkeys, err = parsePasskeys(d)
			}
		case "admins": // repeatable: the names add up
			args := d.RemainingArgs()
			if len(args) == 0 {
				err = d.ArgErr()
			}
			b.Admins = append(b.Admins, args...)
		default:
			err = d.Errf("unknown browser option %q", key)
		}
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// unmarshalCreateGuest reads one `create_guest <matcher>` line.
func (b *Browser) unmarshalCreateGuest(d *caddyfile.Dispenser, h *httpcaddyfile.Helper) error {
	if h == nil {
		return d.Err("create_guest needs a Caddyfile site (named matchers)")
	}
	set, ok, err := h.MatcherToken()
	if err != nil {
		return err
	}
	if !ok {
		return d.Err("create_guest needs a matcher: @name, * or a path")
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if set == nil {
		set = caddy.ModuleMap{} // `*`: every request
	}
	b.CreateGuestRaw = append(b.CreateGuestRaw, set)
	return nil
}

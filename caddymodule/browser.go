package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
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
// HttpOnly, SameSite=Lax, Path=/, host-only, and on HTTPS Secure with the
// `__Host-` prefix. It lasts as long as its session: session_idle_timeout
// (sliding; the store is written, and the cookie re-sent, at most every 5
// minutes per session) and session_lifetime (absolute). It is removed from
// the Cookie header sent upstream. An invalid, expired or revoked cookie is
// cleared and the request goes on without a session.
//
// A request with an Authorization header is a Bearer request as before;
// the JSON API never reads the cookie.
type Browser struct {
	// Name of the session cookie. Default: guestauth_session (sent as
	// __Host-guestauth_session on HTTPS).
	CookieName string `json:"cookie_name,omitempty"`

	// Path prefix of the built-in pages (signup, signin, signout, account,
	// guest). Default: /auth/.
	PagesPrefix string `json:"pages_prefix,omitempty"`

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

	createGuest caddyhttp.MatcherSets
	pages       *pageSet
}

const defaultBrowserCookie = "guestauth_session"

func (b *Browser) setDefaults() {
	if b.CookieName == "" {
		b.CookieName = defaultBrowserCookie
	}
	if b.PagesPrefix == "" {
		b.PagesPrefix = "/auth/"
	}
	if !strings.HasSuffix(b.PagesPrefix, "/") {
		b.PagesPrefix += "/"
	}
	if b.UnconfirmedGuestTTL == nil {
		d := caddy.Duration(time.Hour)
		b.UnconfirmedGuestTTL = &d
	}
	if b.MergedHeader == "" {
		b.MergedHeader = MergedFromHeader
	}
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
	pages, err := loadPages(b.Templates)
	if err != nil {
		return fmt.Errorf("browser templates: %w", err)
	}
	b.pages = pages
	return nil
}

func (b *Browser) validate() error {
	if !strings.HasPrefix(b.PagesPrefix, "/") || strings.ContainsAny(b.PagesPrefix, "?#") {
		return errors.New("browser pages_prefix must be a path starting with /")
	}
	if !validCookieName(b.CookieName) || strings.HasPrefix(b.CookieName, "__") {
		return errors.New("browser cookie_name must be a cookie token not starting with __")
	}
	if *b.UnconfirmedGuestTTL < 0 {
		return errors.New("browser unconfirmed_guest_ttl cannot be negative")
	}
	return nil
}

func validCookieName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", c) {
			return false
		}
	}
	return true
}

// cookieName is the session cookie's name for r: with the __Host- prefix on
// HTTPS, which browsers accept only Secure, host-only and Path=/, so a
// sibling subdomain or a plain-HTTP response cannot plant one.
func (b *Browser) cookieName(r *http.Request) string {
	if r.TLS != nil {
		return "__Host-" + b.CookieName
	}
	return b.CookieName
}

// setSession sends the cookie of login, expiring with its session.
func (b *Browser) setSession(w http.ResponseWriter, r *http.Request, login *accounts.BrowserLogin, now time.Time) {
	maxAge := int(login.Session.EndsAt().Sub(now) / time.Second)
	if maxAge < 1 {
		maxAge = 1
	}
	// Secure (with the __Host- prefix) whenever the site is HTTPS; a plain
	// HTTP site (the demo, local development) cannot have it.
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure on HTTPS, see above
		Name: b.cookieName(r), Value: login.Handle, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
	w.Header().Add("Cache-Control", `no-cache="Set-Cookie"`)
}

// clearSession removes the cookie from the browser.
func (b *Browser) clearSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure on HTTPS, as setSession
		Name: b.cookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	})
}

// readSession reads the session cookie: the handle, and whether a cookie of
// that name was sent at all. Several are refused (none picked silently).
func (b *Browser) readSession(r *http.Request) (handle string, present bool) {
	cs := r.CookiesNamed(b.cookieName(r))
	switch {
	case len(cs) == 0:
		return "", false
	case len(cs) > 1:
		return "", true
	}
	return cs[0].Value, true
}

// stripSession removes the session cookie (both spellings) from what the
// upstream gets.
func (b *Browser) stripSession(h http.Header) {
	stripCookie(h, b.CookieName)
	stripCookie(h, "__Host-"+b.CookieName)
}

// browserIdentity resolves the request's session cookie. An unusable
// cookie is cleared and is no session; only a store failure is an error.
func (g *GuestAuth) browserIdentity(w http.ResponseWriter, r *http.Request) (*accounts.Identity, error) {
	b := g.Browser
	handle, present := b.readSession(r)
	if !present {
		return nil, nil
	}
	var id *accounts.Identity
	var slid *accounts.BrowserLogin
	var err error
	if handle == "" {
		err = errDuplicateCookie
	} else {
		id, slid, err = g.svc.BrowserAuthenticate(r.Context(), handle)
	}
	if err != nil {
		var inv *tokens.InvalidError
		if !errors.As(err, &inv) {
			return nil, err
		}
		g.logger.Debug("session cookie cleared", zap.String("reason", inv.Reason))
		metrics.TokenRejected(inv.Reason)
		b.clearSession(w, r)
		return nil, nil
	}
	if slid != nil {
		b.setSession(w, r, slid, g.now())
	}
	return id, nil
}

// isNavigation reports whether r is a browser page load: GET or HEAD
// accepting text/html. Such requests get redirects and pages, never JSON.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(v, "text/html") {
			return true
		}
	}
	return false
}

// serveBrowser is serveProxied for a request without an Authorization
// header when browser sessions are on.
func (g *GuestAuth) serveBrowser(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler) error {
	b := g.Browser
	id, err := g.browserIdentity(w, r)
	b.stripSession(r.Header)
	if err != nil {
		return g.browserFault(w, r, err, "authenticating browser session")
	}
	if id != nil && crossOrigin.Check(r) != nil {
		return g.pageError(w, r, http.StatusForbidden, "This cross-origin request cannot use your session.")
	}
	if id == nil && len(b.createGuest) > 0 {
		match, err := b.createGuest.AnyMatchWithError(r)
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		if match {
			login, err := g.createBrowserGuest(w, r)
			var te *accounts.ThrottledError
			switch {
			case errors.As(err, &te):
				metrics.RateLimited(te.Limit)
				if g.Require != RequireNone {
					w.Header().Set("Retry-After", strconv.FormatInt(te.RetrySeconds(), 10))
					return g.pageError(w, r, http.StatusTooManyRequests, "Too many new visitors right now; try again in a moment.")
				}
			case err != nil:
				return g.browserFault(w, r, err, "creating browser guest")
			default:
				id = &accounts.Identity{User: login.User, Session: login.Session}
			}
		}
	}
	if id == nil {
		switch {
		case g.Require == RequireNone:
			return g.next(w, r, next, nil)
		case isNavigation(r):
			return g.redirectToPage(w, r, "signin")
		}
		return bearerError(w, http.StatusUnauthorized, "", "")
	}
	if g.Require == RequireUser && id.User.IsAnonymous() {
		if isNavigation(r) {
			return g.redirectToPage(w, r, "signup")
		}
		return bearerError(w, http.StatusForbidden, "insufficient_scope", "A registered user is required; guests must upgrade first.")
	}
	if err := g.setIdentity(r, id); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	guest, err := g.svc.TakeMerge(r.Context(), id)
	if err != nil {
		return g.browserFault(w, r, err, "telling the app of a merge")
	}
	if guest != "" {
		r.Header.Set(b.MergedHeader, guest)
	}
	setUserPlaceholders(repl, id)
	return g.next(w, r, next, id.User)
}

// createBrowserGuest creates a guest for this browser and sets its cookie.
func (g *GuestAuth) createBrowserGuest(w http.ResponseWriter, r *http.Request) (*accounts.BrowserLogin, error) {
	login, err := g.svc.CreateBrowserGuest(accounts.WithClientIP(r.Context(), clientIP(r)), g.limitKey(r))
	if err != nil {
		return nil, err
	}
	g.Browser.setSession(w, r, login, g.now())
	return login, nil
}

// redirectToPage answers a navigation with 303 to a page, coming back to
// the requested path afterwards.
func (g *GuestAuth) redirectToPage(w http.ResponseWriter, r *http.Request, page string) error {
	target := g.Browser.PagesPrefix + page + "?" + url.Values{"return_to": {r.URL.RequestURI()}}.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusSeeOther)
	return nil
}

// safeReturn is return_to when it is a path of this origin, else "/": an
// absolute URL, a scheme (javascript:), //host, a backslash (which browsers
// read as /) or a control character all go to /.
func safeReturn(s string) string {
	if s == "" || len(s) > 2048 || s[0] != '/' || strings.HasPrefix(s, "//") || strings.ContainsAny(s, "\\") {
		return "/"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return "/"
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return s
}

// parseBrowser reads the `browser` block. create_guest takes a matcher
// token (`@name`, `*` or a path), resolved against the site's named
// matchers, so it needs the Caddyfile helper.
func parseBrowser(d *caddyfile.Dispenser, h *httpcaddyfile.Helper) (*Browser, error) {
	b := &Browser{}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		key := d.Val()
		switch key {
		case "cookie_name", "pages_prefix", "templates", "merged_header":
			var v string
			if !d.AllArgs(&v) {
				return nil, d.ArgErr()
			}
			*map[string]*string{
				"cookie_name": &b.CookieName, "pages_prefix": &b.PagesPrefix,
				"templates": &b.Templates, "merged_header": &b.MergedHeader,
			}[key] = v
		case "unconfirmed_guest_ttl":
			var v string
			if !d.AllArgs(&v) {
				return nil, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return nil, d.Errf("%s: %v", key, err)
			}
			cd := caddy.Duration(dur)
			b.UnconfirmedGuestTTL = &cd
		case "create_guest":
			if h == nil {
				return nil, d.Err("create_guest needs a Caddyfile site (named matchers)")
			}
			set, ok, err := h.MatcherToken()
			if err != nil {
				return nil, err
			}
			if !ok {
				return nil, d.Err("create_guest needs a matcher: @name, * or a path")
			}
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			if set == nil {
				set = caddy.ModuleMap{} // `*`: every request
			}
			b.CreateGuestRaw = append(b.CreateGuestRaw, set)
		default:
			return nil, d.Errf("unknown browser option %q", key)
		}
	}
	return b, nil
}

// browserFault answers a proxied browser request whose store work failed:
// the store out of reach is a 503 page with Retry-After, anything else
// Caddy's 500. Never anonymous.
func (g *GuestAuth) browserFault(w http.ResponseWriter, r *http.Request, err error, where string) error {
	switch f := g.classify(err, where); f.kind {
	case failUnavailable:
		setRetryAfter(w, f)
		return g.pageError(w, r, f.status, f.desc)
	case failGone:
		w.WriteHeader(f.status)
		return nil
	}
	return caddyhttp.Error(http.StatusInternalServerError, err)
}

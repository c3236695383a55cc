package pages

// The browser session cookie, in one place: set, read, cleared, and
// stripped from what the upstream gets; and what a proxied browser request
// needs of it (its identity, a lazily created guest, a redirect to a page,
// a fault shown as a page).

import (
	"errors"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// Cookie security modes (Pages.CookieSecure; the browser block's
// cookie_secure).
const (
	SecureAuto   = "auto"
	SecureAlways = "always"
	SecureNever  = "never"
)

// secure reports whether the session cookie of r is Secure, with the
// __Host- prefix: by CookieSecure, and under auto when the site is HTTPS —
// its configured issuer is https (SecureIssuer), r came over TLS, or Caddy's
// trusted_proxies trust the peer that says r arrived over HTTPS (its
// X-Forwarded-Proto). A header from a peer Caddy does not trust counts for
// nothing.
func (p *Pages) secure(r *http.Request) bool {
	switch p.CookieSecure {
	case SecureAlways:
		return true
	case SecureNever:
		return false
	}
	return p.SecureIssuer || r.TLS != nil || forwardedHTTPS(r)
}

// forwardedHTTPS reports whether a proxy Caddy trusts (its server's
// trusted_proxies, which mark each request it serves) says the client
// reached it over HTTPS: the last element of the last X-Forwarded-Proto
// field, the one that proxy wrote, is https.
func forwardedHTTPS(r *http.Request) bool {
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return false
	}
	vs := r.Header.Values("X-Forwarded-Proto")
	if len(vs) == 0 {
		return false
	}
	last := vs[len(vs)-1]
	if i := strings.LastIndexByte(last, ','); i >= 0 {
		last = last[i+1:]
	}
	return strings.EqualFold(textproto.TrimString(last), "https")
}

// cookieName is the session cookie's name for r: with the __Host- prefix
// when it is Secure, which browsers accept only Secure, host-only and
// Path=/, so a sibling subdomain or a plain-HTTP response cannot plant one.
// It is the only name read: on an HTTPS site a plain-named cookie (which
// anyone able to plant cookies for the host could have set) is no session.
func (p *Pages) cookieName(r *http.Request) string {
	if p.secure(r) {
		return "__Host-" + p.CookieName
	}
	return p.CookieName
}

// setSession sends the cookie of login, expiring with its session.
func (p *Pages) setSession(w http.ResponseWriter, r *http.Request, login *accounts.BrowserLogin) {
	maxAge := int(login.Session.EndsAt().Sub(p.Now()) / time.Second)
	if maxAge < 1 {
		maxAge = 1
	}
	// Secure (with the __Host- prefix) whenever the site is HTTPS; a plain
	// HTTP site (the demo, local development) cannot have it.
	p.putCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure on HTTPS, see secure
		Name: p.cookieName(r), Value: login.Handle, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteLaxMode,
	})
	if !slices.Contains(w.Header().Values("Cache-Control"), noCacheCookie) {
		w.Header().Add("Cache-Control", noCacheCookie)
	}
}

const noCacheCookie = `no-cache="Set-Cookie"`

// clearSession removes the cookie from the browser.
func (p *Pages) clearSession(w http.ResponseWriter, r *http.Request) {
	p.putCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure on HTTPS, as setSession
		Name: p.cookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteLaxMode,
	})
}

// putCookie sets c in place of any cookie of its name this answer already
// sets, so an answer sets the session cookie at most once (a request
// that slid the session and then signed in sends only the new session).
func (p *Pages) putCookie(w http.ResponseWriter, c *http.Cookie) {
	h := w.Header()
	if vs := h["Set-Cookie"]; len(vs) > 0 {
		h["Set-Cookie"] = slices.DeleteFunc(slices.Clone(vs), func(v string) bool {
			name, _, _ := strings.Cut(v, "=")
			return textproto.TrimString(name) == c.Name
		})
	}
	http.SetCookie(w, c)
}

// readSession reads the session cookie: the handle, and whether a cookie of
// that name was sent at all. Several are refused (none picked silently).
func (p *Pages) readSession(r *http.Request) (handle string, present bool) {
	cs := r.CookiesNamed(p.cookieName(r))
	switch {
	case len(cs) == 0:
		return "", false
	case len(cs) > 1:
		return "", true
	}
	return cs[0].Value, true
}

// StripSession removes the session cookie (both spellings) from what the
// upstream gets.
func (p *Pages) StripSession(h http.Header) {
	StripCookie(h, p.CookieName)
	StripCookie(h, "__Host-"+p.CookieName)
}

// StripCookie removes every cookie called name from the Cookie header
// fields of h, keeping the other cookies as sent; a field left empty is
// deleted. A session cookie is a credential: the upstream gets the
// identity headers, never the cookie.
func StripCookie(h http.Header, name string) {
	vs, ok := h["Cookie"]
	if !ok {
		return
	}
	kept := vs[:0:0]
	changed := false
	for _, v := range vs {
		var parts []string
		dropped := false
		for part := range strings.SplitSeq(v, ";") {
			n, _, _ := strings.Cut(textproto.TrimString(part), "=")
			if textproto.TrimString(n) == name {
				dropped = true
				continue
			}
			if textproto.TrimString(part) != "" {
				parts = append(parts, textproto.TrimString(part))
			}
		}
		if !dropped {
			kept = append(kept, v)
			continue
		}
		changed = true
		if len(parts) > 0 {
			kept = append(kept, strings.Join(parts, "; "))
		}
	}
	switch {
	case !changed:
	case len(kept) == 0:
		delete(h, "Cookie")
	default:
		h["Cookie"] = kept
	}
}

// crossOrigin refuses unsafe cross-origin browser requests (Sec-Fetch-Site,
// else Origin against Host); GET, HEAD and OPTIONS always pass.
var crossOrigin = http.NewCrossOriginProtection()

// CheckCrossOrigin is the CSRF check of every request a cookie
// authenticates: an unsafe cross-origin request is refused.
func CheckCrossOrigin(r *http.Request) error { return crossOrigin.Check(r) }

// ValidCookieName reports whether s can name a cookie (an RFC 6265 token).
func ValidCookieName(s string) bool {
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

// Identity resolves the request's session cookie. An unusable cookie is
// cleared and is no session; only a store failure is an error.
func (p *Pages) Identity(w http.ResponseWriter, r *http.Request) (*accounts.Identity, error) {
	handle, present := p.readSession(r)
	if !present {
		return nil, nil
	}
	var id *accounts.Identity
	var slid *accounts.BrowserLogin
	var err error
	if handle == "" {
		err = protocol.ErrDuplicateCookie
	} else {
		id, slid, err = p.Accounts.BrowserAuthenticate(r.Context(), handle, p.Issuer(r))
	}
	if err != nil {
		var inv *tokens.InvalidError
		if !errors.As(err, &inv) {
			return nil, err
		}
		p.Logger.Debug("session cookie cleared", zap.String("reason", inv.Reason))
		metrics.TokenRejected(inv.Reason)
		p.clearSession(w, r)
		return nil, nil
	}
	if slid != nil {
		p.setSession(w, r, slid)
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

// LazyGuest creates a guest for a browser without a session whose request
// the module's create_guest matchers selected, and sets its cookie; that
// same request goes on with the new guest's identity. Creation obeys the
// guest limits: a refused one leaves the request without identity (nil),
// or, when required (the access policy demands one), answers it with a
// 429 page (answered true, err what writing it returned).
func (p *Pages) LazyGuest(w http.ResponseWriter, r *http.Request, required bool) (id *accounts.Identity, answered bool, err error) {
	login, err := p.createGuest(w, r)
	var te *accounts.ThrottledError
	switch {
	case errors.As(err, &te):
		metrics.RateLimited(te.Limit)
		if required {
			w.Header().Set("Retry-After", strconv.FormatInt(te.RetrySeconds(), 10))
			return nil, true, p.Error(w, r, http.StatusTooManyRequests, "Too many new visitors right now; try again in a moment.")
		}
		return nil, false, nil
	case err != nil:
		return nil, true, p.Fault(w, r, err, "creating browser guest")
	}
	return &accounts.Identity{User: login.User, Session: login.Session}, false, nil
}

// createGuest creates a guest for this browser and sets its cookie.
func (p *Pages) createGuest(w http.ResponseWriter, r *http.Request) (*accounts.BrowserLogin, error) {
	login, err := p.Accounts.CreateBrowserGuest(accounts.WithClientIP(r.Context(), p.ClientIP(r)), p.Issuer(r), p.LimitKey(r))
	if err != nil {
		return nil, err
	}
	p.setSession(w, r, login)
	return login, nil
}

// Refuse answers a browser request without the identity the access policy
// needs: a page load is sent to page (signin, or signup for a guest),
// coming back afterwards; any other request gets the RFC 6750 answer
// (status, code, desc).
func (p *Pages) Refuse(w http.ResponseWriter, r *http.Request, page string, status int, code, desc string) error {
	if isNavigation(r) {
		return p.Redirect(w, r, page)
	}
	return protocol.BearerError(w, status, code, desc)
}

// Redirect answers a navigation with 303 to a page, coming back to the
// requested path afterwards.
func (p *Pages) Redirect(w http.ResponseWriter, r *http.Request, page string) error {
	target := p.Prefix + page + "?" + url.Values{"return_to": {r.URL.RequestURI()}}.Encode()
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

// Fault answers a proxied browser request whose store work failed: the
// store out of reach is a 503 page with Retry-After, anything else Caddy's
// 500. Never anonymous.
func (p *Pages) Fault(w http.ResponseWriter, r *http.Request, err error, where string) error {
	switch f := protocol.Classify(p.Logger, err, where); f.Kind {
	case protocol.FailUnavailable:
		protocol.SetRetryAfter(w, f)
		return p.Error(w, r, f.Status, f.Desc)
	case protocol.FailGone:
		w.WriteHeader(f.Status)
		return nil
	}
	return caddyhttp.Error(http.StatusInternalServerError, err)
}

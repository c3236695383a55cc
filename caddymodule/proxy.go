package caddymodule

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/internal/pages"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// The proxy path: every request that is not one of the module's endpoints
// or pages has its client-sent identity headers stripped, its credential
// (a Bearer token, the `cookie` option's token, or a browser session)
// checked against the access policy, and the verified identity set as
// headers and placeholders for the next handler; the response's keep
// header is acted on (upstream.go).

// normalizeHeaderName folds a header name the way upstreams may read it:
// case-insensitive, and CGI-style servers (HTTP_X_AUTH_USER_ID) read '_'
// and '.' as '-'.
func normalizeHeaderName(s string) string {
	return strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(s))
}

// headerNameIs compares without allocating (this runs on every header of
// every request).
func headerNameIs(key, normalized string) bool {
	if len(key) != len(normalized) {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '_' || c == '.':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != normalized[i] {
			return false
		}
	}
	return true
}

// stripIdentityHeaders removes every client-sent header of the identity set
// from r, in any spelling, so only guest_auth's own values reach the next
// handler:
//
//   - header fields named by the set are deleted;
//   - Connection (and Trailer) tokens naming one are dropped, since
//     reverse_proxy deletes the headers a Connection field names *after*
//     guest_auth has set them; other tokens (close, keep-alive, Upgrade)
//     stay, and a field left empty is deleted;
//   - request trailers named by the set are deleted, now and when the body
//     reaches EOF (net/http fills trailers in only then, and reverse_proxy
//     copies them to the upstream at that same EOF).
//
// A request with neither Connection, Trailer nor trailers costs no
// allocation.
func (g *GuestAuth) stripIdentityHeaders(r *http.Request) {
	h := r.Header
	for key := range h {
		if g.isIdentityHeader(key) {
			delete(h, key)
		}
	}
	for _, field := range [...]string{"Connection", "Trailer"} {
		if vs, ok := h[field]; ok {
			if kept, changed := g.dropIdentityTokens(vs); changed {
				if len(kept) == 0 {
					delete(h, field)
				} else {
					h[field] = kept
				}
			}
		}
	}
	if r.Trailer != nil {
		g.stripTrailer(r.Trailer)
	}
	// HTTP/1.1 merges every trailer the client sends (declared or not) into
	// r.Trailer at EOF; HTTP/2 copies only declared ones, just deleted above.
	if r.Body != nil && r.Body != http.NoBody && (r.Trailer != nil || len(r.TransferEncoding) > 0) {
		r.Body = &trailerStripper{ReadCloser: r.Body, g: g, r: r}
	}
}

func (g *GuestAuth) isIdentityHeader(key string) bool {
	for _, name := range g.strip {
		if headerNameIs(key, name) {
			return true
		}
	}
	return false
}

func (g *GuestAuth) stripTrailer(t http.Header) {
	for key := range t {
		if g.isIdentityHeader(key) {
			delete(t, key)
		}
	}
}

// dropIdentityTokens rewrites the values of a comma-separated list of
// header names (Connection, Trailer) without the identity names. changed is
// false, and nothing is allocated, when no token names one.
func (g *GuestAuth) dropIdentityTokens(values []string) (kept []string, changed bool) {
	found := false
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if g.isIdentityHeader(textproto.TrimString(tok)) {
				found = true
				break
			}
		}
	}
	if !found {
		return values, false
	}
	for _, v := range values {
		var toks []string
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" && !g.isIdentityHeader(tok) {
				toks = append(toks, tok)
			}
		}
		if len(toks) > 0 {
			kept = append(kept, strings.Join(toks, ", "))
		}
	}
	return kept, true
}

// trailerStripper removes identity trailers the moment net/http has read
// them, at EOF, before any reader wrapping it (reverse_proxy's) sees EOF.
type trailerStripper struct {
	io.ReadCloser
	g *GuestAuth
	r *http.Request
}

func (b *trailerStripper) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.r.Trailer != nil {
		b.g.stripTrailer(b.r.Trailer)
	}
	return n, err
}

// The {http.auth.user.*} placeholders, and the anonymous flag's values
// boxed once (a string put in an interface is otherwise allocated).
const (
	placeholderUserID        = "http.auth.user.id"
	placeholderUserName      = "http.auth.user.name"
	placeholderUserTag       = "http.auth.user.tag"
	placeholderUserAnonymous = "http.auth.user.anonymous"
)

var boxedBool = [2]any{"false", "true"}

// setUserPlaceholders sets {http.auth.user.*}; id nil means no user.
func setUserPlaceholders(repl *caddy.Replacer, id *accounts.Identity) {
	if id == nil {
		for _, k := range [...]string{placeholderUserID, placeholderUserName, placeholderUserTag, placeholderUserAnonymous} {
			repl.Set(k, "")
		}
		return
	}
	repl.Set(placeholderUserID, id.User.ID)
	repl.Set(placeholderUserName, id.User.Name)
	repl.Set(placeholderUserTag, id.User.Tag)
	repl.Set(placeholderUserAnonymous, boxedBool[boolIndex(id.User.IsAnonymous())])
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// serveProxied enforces the access policy and injects identity headers.
func (g *GuestAuth) serveProxied(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler) error {
	if g.Browser != nil {
		// Browser sessions (browser.go) for requests without an
		// Authorization header; Bearer requests go on below, the session
		// cookie stripped.
		if len(r.Header.Values("Authorization")) == 0 {
			return g.serveBrowser(w, r, repl, next)
		}
		g.pages.StripSession(r.Header)
	}
	raw, fromCookie, present, malformed := protocol.Credential(r, g.Cookie)
	if g.Cookie != "" {
		pages.StripCookie(r.Header, g.Cookie)
	}
	if malformed {
		return protocol.BearerError(w, http.StatusBadRequest, "invalid_request", "The Authorization header is malformed.")
	}
	if !present {
		if g.Require != RequireNone {
			return protocol.BearerError(w, http.StatusUnauthorized, "", "")
		}
		return g.next(w, r, next, nil)
	}
	var id *accounts.Identity
	var err error
	if raw == "" {
		err = protocol.ErrDuplicateCookie
	} else {
		id, err = g.svc.Authenticate(r.Context(), raw, g.issuerFor(r))
	}
	if err != nil {
		// An invalid, expired or duplicated session cookie is no session:
		// under require none the visitor goes on as anonymous (the cookie
		// never forwarded); a token in the Authorization header is always
		// answered 401 (RFC 6750).
		var inv *tokens.InvalidError
		if fromCookie && g.Require == RequireNone && errors.As(err, &inv) {
			g.logger.Debug("session cookie ignored", zap.String("reason", inv.Reason))
			metrics.TokenRejected(inv.Reason)
			return g.next(w, r, next, nil)
		}
		return g.protocol.WriteBearerError(w, err)
	}
	if fromCookie {
		if err := pages.CheckCrossOrigin(r); err != nil {
			return protocol.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "cross_origin_request", "error_description": "A cross-origin request cannot use the session cookie."})
		}
	}
	if g.Require == RequireUser && id.User.IsAnonymous() {
		return protocol.BearerError(w, http.StatusForbidden, "insufficient_scope", errGuest)
	}
	if err := g.setIdentity(r, id); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	setUserPlaceholders(repl, id)
	return g.next(w, r, next, id.User)
}

// setIdentity sets the identity headers of id on the request for the
// upstream (Bearer and cookie sessions alike), and the signed assertion
// when configured.
func (g *GuestAuth) setIdentity(r *http.Request, id *accounts.Identity) error {
	// h.Set for each, with one allocation for the four values.
	h := r.Header
	v := make([]string, 4)
	v[0], v[1], v[2], v[3] = id.User.ID, id.User.Name, id.User.Tag, strconv.FormatBool(id.User.IsAnonymous())
	h[g.canonical.userID], h[g.canonical.userName] = v[0:1:1], v[1:2:2]
	h[g.canonical.userTag], h[g.canonical.userAnonymous] = v[2:3:3], v[3:4:4]
	return g.setAssertion(r, id.User)
}

// errGuest is the refusal of a guest where require is user.
const errGuest = "A registered user is required; guests must upgrade first."

// serveBrowser is serveProxied for a request without an Authorization
// header when browser sessions are on: the session cookie's identity (or a
// guest created for the request when create_guest matches it) under the
// access policy, where a page load is redirected to the pages.
func (g *GuestAuth) serveBrowser(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler) error {
	p := g.pages
	id, err := p.Identity(w, r)
	p.StripSession(r.Header)
	if err != nil {
		return p.Fault(w, r, err, "authenticating browser session")
	}
	if id != nil && pages.CheckCrossOrigin(r) != nil {
		return p.Error(w, r, http.StatusForbidden, "This cross-origin request cannot use your session.")
	}
	if id == nil && len(g.Browser.createGuest) > 0 {
		match, err := g.Browser.createGuest.AnyMatchWithError(r)
		if err != nil {
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		if match {
			var answered bool
			if id, answered, err = p.LazyGuest(w, r, g.Require != RequireNone); answered {
				return err
			}
		}
	}
	if id == nil {
		switch {
		case g.Require == RequireNone:
			return g.next(w, r, next, nil)
		case pages.IsNavigation(r):
			return p.Redirect(w, r, "signin")
		}
		return protocol.BearerError(w, http.StatusUnauthorized, "", "")
	}
	if g.Require == RequireUser && id.User.IsAnonymous() {
		if pages.IsNavigation(r) {
			return p.Redirect(w, r, "signup")
		}
		return protocol.BearerError(w, http.StatusForbidden, "insufficient_scope", errGuest)
	}
	if err := g.setIdentity(r, id); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	guest, err := g.svc.TakeMerge(r.Context(), id)
	if err != nil {
		return p.Fault(w, r, err, "telling the app of a merge")
	}
	if guest != "" {
		r.Header.Set(g.Browser.MergedHeader, guest)
	}
	setUserPlaceholders(repl, id)
	return g.next(w, r, next, id.User)
}

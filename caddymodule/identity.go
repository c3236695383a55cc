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
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

const realm = "guest_auth"

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

// bearerToken reads the access token: the Authorization header (scheme
// "Bearer", any case) or, for proxied requests, the configured cookie.
// present reports whether a token was offered at all; malformed is set when
// the Authorization header claims Bearer but is unusable.
func bearerToken(r *http.Request, cookie string) (token string, present bool, malformed bool) {
	token, _, present, malformed = credential(r, cookie)
	return token, present, malformed
}

// credential is bearerToken also saying whether the token came from the
// cookie. The cookie is read only when the request has no Authorization
// header. Several cookies of that name (a stale one for another path or a
// parent domain, or one planted by a sibling subdomain) are refused rather
// than one picked silently: they are reported present with an empty token,
// which authenticates as nothing (errDuplicateCookie).
func credential(r *http.Request, cookie string) (token string, fromCookie, present, malformed bool) {
	authz := r.Header.Values("Authorization")
	for _, v := range authz {
		scheme, rest, _ := strings.Cut(v, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			continue
		}
		if len(authz) > 1 {
			return "", false, true, true
		}
		token = strings.TrimSpace(rest)
		return token, false, true, token == ""
	}
	if cookie == "" || len(authz) != 0 {
		return "", false, false, false
	}
	var n int
	for _, c := range r.CookiesNamed(cookie) {
		if c.Value != "" {
			n++
			token = c.Value
		}
	}
	switch n {
	case 0:
		return "", false, false, false
	case 1:
		return token, true, true, false
	}
	return "", true, true, false
}

// errDuplicateCookie refuses a request carrying the session cookie twice.
var errDuplicateCookie = &tokens.InvalidError{Reason: reasonDuplicateCookie}

const reasonDuplicateCookie = "duplicate_cookie"

// stripCookie removes every cookie called name from the Cookie header
// fields of h, keeping the other cookies as sent; a field left empty is
// deleted. The session cookie is a bearer credential: the upstream gets the
// identity headers, never the token.
func stripCookie(h http.Header, name string) {
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

// serveProxied enforces the access policy and injects identity headers.
func (g *GuestAuth) serveProxied(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler) error {
	if g.Browser != nil {
		// Browser sessions (browser.go) for requests without an
		// Authorization header; Bearer requests go on below, the session
		// cookie stripped.
		if len(r.Header.Values("Authorization")) == 0 {
			return g.serveBrowser(w, r, repl, next)
		}
		g.Browser.stripSession(r.Header)
	}
	raw, fromCookie, present, malformed := credential(r, g.Cookie)
	if g.Cookie != "" {
		stripCookie(r.Header, g.Cookie)
	}
	if malformed {
		return bearerError(w, http.StatusBadRequest, "invalid_request", "The Authorization header is malformed.")
	}
	if !present {
		if g.Require != RequireNone {
			return bearerError(w, http.StatusUnauthorized, "", "")
		}
		return g.next(w, r, next, nil)
	}
	var id *accounts.Identity
	var err error
	if raw == "" {
		err = errDuplicateCookie
	} else {
		id, err = g.authenticate(r, raw)
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
		return g.writeBearerError(w, err)
	}
	if fromCookie {
		if err := crossOrigin.Check(r); err != nil {
			return writeJSON(w, http.StatusForbidden, oauthError{Error: "cross_origin_request", Description: "A cross-origin request cannot use the session cookie."})
		}
	}
	if g.Require == RequireUser && id.User.IsAnonymous() {
		return bearerError(w, http.StatusForbidden, "insufficient_scope", "A registered user is required; guests must upgrade first.")
	}
	if err := g.setIdentity(r, id); err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	setUserPlaceholders(repl, id)
	return g.next(w, r, next, id.User)
}

func (g *GuestAuth) authenticate(r *http.Request, raw string) (*accounts.Identity, error) {
	return g.svc.Authenticate(r.Context(), raw, g.issuerFor(r))
}

var tokenErrorText = map[string]string{
	tokens.ReasonMalformed:      "The access token is malformed.",
	tokens.ReasonSignature:      "The access token signature is invalid.",
	tokens.ReasonExpired:        "The access token expired.",
	tokens.ReasonIssuer:         "The access token was issued for another site.",
	tokens.ReasonAudience:       "The access token was issued to a client this site does not serve.",
	tokens.ReasonClaims:         "The access token is not valid now.",
	accounts.ReasonSessionEnded: "The session of this access token has ended.",
	reasonDuplicateCookie:       "The session cookie was sent more than once.",
}

// setBearerChallenge sets the RFC 6750 §3 WWW-Authenticate challenge.
func setBearerChallenge(w http.ResponseWriter, code, desc string) {
	challenge := `Bearer realm="` + realm + `"`
	if code != "" {
		challenge += `, error="` + code + `"`
		if desc != "" {
			challenge += `, error_description="` + desc + `"`
		}
	}
	w.Header().Set("WWW-Authenticate", challenge)
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

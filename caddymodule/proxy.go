package caddymodule

import (
	"errors"
	"net/http"

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
		// Browser sessions (serveBrowser) for requests without an
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
	g.headers.Set(r.Header, id.User)
	if g.Assertion == nil {
		return nil
	}
	aud := g.Assertion.Audience
	if aud == "" {
		aud = g.originFor(r)
	}
	return g.Assertion.signer.Set(r.Header, id.User, g.issuerFor(r), aud)
}

// errGuest is the refusal of a guest where require is user.
const errGuest = "A registered user is required; guests must upgrade first."

// serveBrowser is serveProxied for a request without an Authorization
// header when browser sessions are on: the session cookie's identity (or a
// guest created for the request when create_guest matches it) under the
// access policy, where a page load lacking it goes to the pages.
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
		if g.Require == RequireNone {
			return g.next(w, r, next, nil)
		}
		return p.Refuse(w, r, "signin", http.StatusUnauthorized, "", "")
	}
	if g.Require == RequireUser && id.User.IsAnonymous() {
		return p.Refuse(w, r, "signup", http.StatusForbidden, "insufficient_scope", errGuest)
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

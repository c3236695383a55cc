package caddymodule

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/accounts"
	"github.com/guestauth/caddy-guestauth/metrics"
	"github.com/guestauth/caddy-guestauth/tokens"
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

// stripIdentityHeaders removes every client-sent header of the identity set.
func (g *GuestAuth) stripIdentityHeaders(h http.Header) {
	for key := range h {
		for _, name := range g.strip {
			if headerNameIs(key, name) {
				delete(h, key)
				break
			}
		}
	}
}

// setUserPlaceholders sets {http.auth.user.*}; id nil means no user.
func setUserPlaceholders(repl *caddy.Replacer, id *accounts.Identity) {
	if id == nil {
		for _, k := range []string{"id", "name", "tag", "anonymous"} {
			repl.Set("http.auth.user."+k, "")
		}
		return
	}
	repl.Set("http.auth.user.id", id.User.ID)
	repl.Set("http.auth.user.name", id.User.Name)
	repl.Set("http.auth.user.tag", id.User.Tag)
	repl.Set("http.auth.user.anonymous", strconv.FormatBool(id.User.IsAnonymous()))
}

// bearerToken reads the access token: the Authorization header (scheme
// "Bearer", any case) or, for proxied requests, the configured cookie.
// present reports whether a token was offered at all; malformed is set when
// the Authorization header claims Bearer but is unusable.
func bearerToken(r *http.Request, cookie string) (token string, present bool, malformed bool) {
	authz := r.Header.Values("Authorization")
	for _, v := range authz {
		scheme, rest, _ := strings.Cut(v, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			continue
		}
		if len(authz) > 1 {
			return "", true, true
		}
		token = strings.TrimSpace(rest)
		return token, true, token == ""
	}
	if cookie != "" && len(authz) == 0 {
		if c, err := r.Cookie(cookie); err == nil && c.Value != "" {
			return c.Value, true, false
		}
	}
	return "", false, false
}

// serveProxied enforces the access policy and injects identity headers.
func (g *GuestAuth) serveProxied(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, next caddyhttp.Handler) error {
	raw, present, malformed := bearerToken(r, g.Cookie)
	if malformed {
		return bearerError(w, http.StatusBadRequest, "invalid_request", "The Authorization header is malformed.")
	}
	if !present {
		if g.Require != RequireNone {
			return bearerError(w, http.StatusUnauthorized, "", "")
		}
		return g.next(w, r, next, nil)
	}
	id, err := g.authenticate(r, raw)
	if err != nil {
		return g.writeAuthError(w, err)
	}
	if g.Require == RequireUser && id.User.IsAnonymous() {
		return bearerError(w, http.StatusForbidden, "insufficient_scope", "A registered user is required; guests must upgrade first.")
	}
	h := r.Header
	h.Set(g.Headers.UserID, id.User.ID)
	h.Set(g.Headers.UserName, id.User.Name)
	h.Set(g.Headers.UserTag, id.User.Tag)
	h.Set(g.Headers.UserAnonymous, strconv.FormatBool(id.User.IsAnonymous()))
	setUserPlaceholders(repl, id)
	return g.next(w, r, next, id.User)
}

func (g *GuestAuth) authenticate(r *http.Request, raw string) (*accounts.Identity, error) {
	return g.svc.Authenticate(raw, g.issuerFor(r))
}

// writeAuthError answers a refused token per RFC 6750; a store failure is
// a 500 (not the client's fault, and never treated as anonymous).
func (g *GuestAuth) writeAuthError(w http.ResponseWriter, err error) error {
	var inv *tokens.InvalidError
	if errors.As(err, &inv) {
		g.logger.Debug("access token refused", zap.String("reason", inv.Reason))
		metrics.TokenRejected(inv.Reason)
		return bearerError(w, http.StatusUnauthorized, "invalid_token", tokenErrorText[inv.Reason])
	}
	g.logger.Error("authenticating request", zap.Error(err))
	return caddyhttp.Error(http.StatusInternalServerError, err)
}

var tokenErrorText = map[string]string{
	tokens.ReasonMalformed:      "The access token is malformed.",
	tokens.ReasonSignature:      "The access token signature is invalid.",
	tokens.ReasonExpired:        "The access token expired.",
	tokens.ReasonIssuer:         "The access token was issued for another site.",
	tokens.ReasonAudience:       "The access token was issued to a client this site does not serve.",
	tokens.ReasonClaims:         "The access token is not valid now.",
	accounts.ReasonSessionEnded: "The session of this access token has ended.",
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

// bearerError answers with the RFC 6750 challenge and a JSON body.
func bearerError(w http.ResponseWriter, status int, code, desc string) error {
	setBearerChallenge(w, code, desc)
	body := oauthError{Error: code, Description: desc}
	if code == "" {
		body = oauthError{Error: "unauthorized", Description: "An access token is required."}
	}
	return writeJSON(w, status, body)
}

package protocol

import (
	"net/http"
	"strings"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

const realm = "guest_auth"

// Credential reads the access token of r: the Authorization header (scheme
// "Bearer", any case) or, when cookie is set and the request has no
// Authorization header, the cookie of that name (the `cookie` option,
// proxied requests only). present reports whether a token was offered at
// all; malformed is set when the Authorization header claims Bearer but is
// unusable. Several cookies of the name (a stale one for another path or a
// parent domain, or one planted by a sibling subdomain) are refused rather
// than one picked silently: they are reported present with an empty token,
// which authenticates as nothing (ErrDuplicateCookie).
func Credential(r *http.Request, cookie string) (token string, fromCookie, present, malformed bool) {
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

// ErrDuplicateCookie refuses a request carrying the session cookie twice.
var ErrDuplicateCookie = &tokens.InvalidError{Reason: ReasonDuplicateCookie}

// ReasonDuplicateCookie is ErrDuplicateCookie's reason, as metrics count it.
const ReasonDuplicateCookie = "duplicate_cookie"

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

var tokenErrorText = map[string]string{
	tokens.ReasonMalformed:      "The access token is malformed.",
	tokens.ReasonSignature:      "The access token signature is invalid.",
	tokens.ReasonExpired:        "The access token expired.",
	tokens.ReasonIssuer:         "The access token was issued for another site.",
	tokens.ReasonAudience:       "The access token was issued to a client this site does not serve.",
	tokens.ReasonClaims:         "The access token is not valid now.",
	accounts.ReasonSessionEnded: "The session of this access token has ended.",
	ReasonDuplicateCookie:       "The session cookie was sent more than once.",
}

package caddymodule

import (
	"net/http"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	_ = writeJSON(w, http.StatusMethodNotAllowed, oauthError{Error: accounts.CodeInvalidRequest, Description: "Use GET."})
	return false
}

func (g *GuestAuth) serveDiscovery(w http.ResponseWriter, r *http.Request) error {
	if !allowGet(w, r) {
		return nil
	}
	iss, origin := g.issuerFor(r), g.originFor(r)
	doc := map[string]any{
		"issuer":                                     iss,
		"jwks_uri":                                   iss + pathJWKS,
		"token_endpoint":                             origin + PathToken,
		"userinfo_endpoint":                          origin + PathUserInfoOAuth,
		"revocation_endpoint":                        origin + PathRevoke,
		"grant_types_supported":                      []string{"authorization_code", "password", "refresh_token", accounts.GrantAnonymousRequest},
		"response_types_supported":                   []string{"code"},
		"subject_types_supported":                    []string{"public"},
		"id_token_signing_alg_values_supported":      []string{string(g.alg)},
		"token_endpoint_auth_methods_supported":      g.tokenAuthMethods(),
		"revocation_endpoint_auth_methods_supported": g.tokenAuthMethods(),
		"scopes_supported":                           []string{accounts.Scope},
		"claims_supported":                           []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "sid", "name", "preferred_username", "tag", "is_anonymous"},
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if g.issuer == "" {
		// The document names the request's own origin: a shared cache must
		// not serve it to requests for another host.
		return writeJSON(w, http.StatusOK, doc)
	}
	return writeJSONPublic(w, doc)
}

func (g *GuestAuth) serveJWKS(w http.ResponseWriter, r *http.Request) error {
	if !allowGet(w, r) {
		return nil
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err := w.Write(g.shared.keys.JWKS())
	return err
}

package protocol

import (
	"net/http"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// Discovery is the OpenID Provider configuration document, GET.
func (h *Handler) Discovery(w http.ResponseWriter, r *http.Request) error {
	iss, origin := h.Issuer(r), h.Origin(r)
	secretOnly := []string{"client_secret_basic", "client_secret_post"}
	doc := map[string]any{
		"issuer":                                        iss,
		"jwks_uri":                                      iss + PathJWKS,
		"token_endpoint":                                origin + PathToken,
		"userinfo_endpoint":                             origin + PathUserInfoOAuth,
		"revocation_endpoint":                           origin + PathRevoke,
		"introspection_endpoint":                        origin + PathIntrospect,
		"grant_types_supported":                         []string{"authorization_code", "password", "refresh_token", accounts.GrantAnonymousRequest},
		"response_types_supported":                      []string{"code"},
		"response_modes_supported":                      []string{"query"},
		"subject_types_supported":                       []string{"public"},
		"id_token_signing_alg_values_supported":         []string{string(h.Alg)},
		"token_endpoint_auth_methods_supported":         h.tokenAuthMethods(),
		"revocation_endpoint_auth_methods_supported":    h.tokenAuthMethods(),
		"introspection_endpoint_auth_methods_supported": secretOnly,
		"code_challenge_methods_supported":              []string{"S256"},
		"scopes_supported":                              Scopes,
		"claims_supported":                              []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "sid", "name", "preferred_username", "tag", "is_anonymous", "email", "email_verified"},
		"request_parameter_supported":                   false,
		"request_uri_parameter_supported":               false,
	}
	// Always named (Discovery 1.0 requires authorization_endpoint); without
	// browser sessions they answer 404 saying why.
	doc["authorization_endpoint"] = origin + PathAuthorize
	doc["end_session_endpoint"] = origin + PathEndSession
	doc["authorization_response_iss_parameter_supported"] = true
	doc["prompt_values_supported"] = []string{"none", "login", "consent", "select_account", "create"}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if !h.FixedIssuer {
		// The document names the request's own origin: a shared cache must
		// not serve it to requests for another host.
		return WriteJSON(w, http.StatusOK, doc)
	}
	return writeJSONPublic(w, doc)
}

// JWKS is the key set verifying the tokens, GET.
func (h *Handler) JWKS(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err := w.Write(h.KeySet())
	return err
}

package protocol

import (
	"fmt"
	"net/http"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// PathRefreshCasdoor is Casdoor's refresh endpoint, which its server SDKs
// call (RefreshOAuthToken, refreshToken).
const PathRefreshCasdoor = "/api/login/oauth/refresh_token"

// RefreshCasdoor is Casdoor's refresh endpoint, POST: the refresh_token
// grant of the token endpoint, with its client authentication and
// answers, reading the bodies Casdoor's SDKs send (form from the Go SDK,
// JSON with Basic and the body secret from the Node SDK; JSON labelled
// text/plain and multipart as Casdoor reads them too). grant_type must be
// refresh_token. A public client refreshes with its client_id alone; a
// confidential one must authenticate.
func (h *Handler) RefreshCasdoor(w http.ResponseWriter, r *http.Request) error {
	r = r.WithContext(accounts.WithClientIP(r.Context(), h.ClientIP(r)))
	issued, err := h.refreshCasdoor(w, r)
	if err != nil {
		return h.writeOAuthError(w, err)
	}
	return WriteJSON(w, http.StatusOK, issued.Tokens)
}

func (h *Handler) refreshCasdoor(w http.ResponseWriter, r *http.Request) (*accounts.Issued, error) {
	params, err := readParamsAs(w, r, textJSON|multipartFields)
	if err != nil {
		return nil, err
	}
	switch grant := params["grant_type"]; grant {
	case "refresh_token":
	case "":
		return nil, badRequest("The grant_type parameter is missing.")
	default:
		return nil, &accounts.Error{Code: accounts.CodeUnsupportedGrantType, Description: fmt.Sprintf("This endpoint takes grant_type refresh_token, not %q.", grant)}
	}
	client, err := h.authenticateClient(r, params)
	if err != nil {
		return nil, err
	}
	token := params["refresh_token"]
	if token == "" {
		return nil, badRequest("The refresh_token parameter is missing.")
	}
	return h.Accounts.Refresh(r.Context(), h.Issuer(r), client.ID, token)
}

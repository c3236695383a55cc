package protocol

import (
	"errors"
	"net/http"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// PathDeleteAccount is where users delete their own account (the account
// API's envelope).
const PathDeleteAccount = "/api/delete-account"

// DeleteAccount deletes the caller's account, POST with the Bearer token,
// and `password` (JSON or form) when the account has one; a guest may send
// no body at all. The answer is Casdoor's envelope: 200 ok; a missing or
// wrong password 403 (the token is fine, so no 401 and no challenge: a
// client must not drop its tokens over a mistyped password); a refused
// token 401 with the RFC 6750 challenge; throttled 429 and a store out of
// reach 503, both with Retry-After.
func (h *Handler) DeleteAccount(w http.ResponseWriter, r *http.Request) error {
	id, err := h.identity(r)
	if err != nil {
		return apiAuthError(w, err, h.writeEnvelopeError)
	}
	params := map[string]string{}
	if r.Header.Get("Content-Type") != "" || r.ContentLength != 0 {
		if params, err = readParams(w, r); err != nil {
			return h.writeEnvelopeError(w, err)
		}
	}
	ctx := accounts.WithClientIP(r.Context(), h.ClientIP(r))
	if err := h.Accounts.DeleteAccount(ctx, id, params["password"], h.LimitKey(r)); err != nil {
		var ae *accounts.Error
		if errors.As(err, &ae) && ae.Code == accounts.CodeWrongPassword {
			err = &httpError{status: http.StatusForbidden, err: ae}
		}
		return h.writeEnvelopeError(w, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	return WriteJSON(w, http.StatusOK, envelope{Status: "ok", Data: "Affected"})
}

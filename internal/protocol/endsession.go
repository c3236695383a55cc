package protocol

// RP-Initiated Logout 1.0: the end-session endpoint ends the browser
// session and, when the id_token_hint names one, the client's session its
// ID token belongs to (sid), then sends the visitor to a registered
// post_logout_redirect_uri (with state) or shows the signed-out page.
//
// A GET must not sign anyone out behind their back (any site can make a
// browser load this URL), so the browser session ends at once only when
// the hint is an ID token of the signed-in user (§2: the OP must ask
// otherwise); without one, or for another user, the visitor confirms on the
// sign-out page, whose form carries the CSRF check, and comes back here to
// finish. The logout waits for that in a flow state, as an authorization
// request waits for a sign-in.

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// logoutTTL is how long a logout waits for the visitor's confirmation.
const logoutTTL = 15 * time.Minute

// logoutRequest is a validated logout, as stored while the visitor
// confirms.
type logoutRequest struct {
	ClientID string `json:"client_id,omitempty"`
	Redirect string `json:"post_logout_redirect_uri,omitempty"`
	State    string `json:"state,omitempty"`
	// Subject and SessionID are the verified id_token_hint's sub and sid.
	Subject   string `json:"sub,omitempty"`
	SessionID string `json:"sid,omitempty"`
}

// EndSession is the end-session endpoint, GET or POST (a form).
func (h *Handler) EndSession(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if h.Browser == nil {
		return plainError(w, http.StatusNotFound, "This site has no browser sessions (guest_auth's browser option) to sign out of.")
	}
	params, bad := browserParams(w, r)
	if bad != "" {
		return h.Browser.Error(w, r, http.StatusBadRequest, bad)
	}
	if handle, ok := resumeHandle(params); ok {
		return h.resumeLogout(w, r, handle)
	}
	req, msg := h.parseLogout(r, params)
	if msg != "" {
		return h.Browser.Error(w, r, http.StatusBadRequest, msg)
	}
	id, err := h.Browser.Identity(w, r)
	if err != nil {
		return h.Browser.Fault(w, r, err, "reading the browser session")
	}
	switch {
	case id == nil:
		return h.finishLogout(w, r, req)
	case req.Subject != "" && req.Subject == id.User.ID:
		if err := h.Browser.EndSession(w, r, id); err != nil {
			return h.Browser.Fault(w, r, err, "ending the browser session")
		}
		return h.finishLogout(w, r, req)
	}
	ctx := accounts.WithClientIP(r.Context(), h.ClientIP(r))
	handle, err := h.Accounts.PutFlowState(ctx, accounts.FlowLogout, logoutTTL, req, h.LimitKey(r))
	if err != nil {
		return h.Browser.Fault(w, r, err, "storing a logout")
	}
	return h.confirmLogout(w, r, handle)
}

// confirmLogout sends the visitor to the sign-out page, which returns here
// once they signed out.
func (h *Handler) confirmLogout(w http.ResponseWriter, r *http.Request, handle string) error {
	back := r.URL.Path + "?" + url.Values{"resume": {handle}}.Encode()
	http.Redirect(w, r, h.Browser.PageURL("signout", back, ""), http.StatusSeeOther) //nolint:gosec // G710: a path of this site's pages
	return nil
}

// parseLogout checks a logout request; msg, when not empty, is the error
// page's text (a logout never redirects anywhere not registered).
func (h *Handler) parseLogout(r *http.Request, params url.Values) (*logoutRequest, string) {
	for k, vs := range params {
		if len(vs) > 1 {
			return nil, "The parameter " + k + " is repeated."
		}
	}
	req := &logoutRequest{ClientID: first(params, "client_id"), Redirect: first(params, "post_logout_redirect_uri"), State: first(params, "state")}
	if len(req.State) > maxStateLen {
		return nil, "The state is too long."
	}
	if raw := first(params, "id_token_hint"); raw != "" {
		hint, err := h.Accounts.VerifyIDTokenHint(raw, h.Issuer(r))
		if err != nil {
			var inv *tokens.InvalidError
			if errors.As(err, &inv) {
				return nil, "The id_token_hint is not an ID token of this site."
			}
			return nil, "The id_token_hint could not be checked."
		}
		switch {
		case req.ClientID == "":
			// The hint's audience names the client.
			for _, aud := range hint.Audience {
				if h.Clients[aud] != nil {
					req.ClientID = aud
					break
				}
			}
		case !slices.Contains(hint.Audience, req.ClientID):
			return nil, "The id_token_hint was not issued to the client_id given."
		}
		req.Subject, req.SessionID = hint.Subject, hint.SessionID
	}
	var c *Client
	if req.ClientID != "" {
		if c = h.Clients[req.ClientID]; c == nil {
			return nil, "The app that sent you here (client_id) is not known to this site."
		}
	}
	if req.Redirect != "" {
		switch {
		case c == nil:
			return nil, "A post_logout_redirect_uri needs the client_id or id_token_hint of its app."
		case !slices.Contains(c.PostLogoutRedirectURIs, req.Redirect):
			return nil, "The address the app asked to return to after signing out (post_logout_redirect_uri) is not registered for it."
		}
	}
	return req, ""
}

// resumeLogout finishes a logout once the visitor signed out on the
// sign-out page.
func (h *Handler) resumeLogout(w http.ResponseWriter, r *http.Request, handle string) error {
	var req logoutRequest
	_, err := h.Accounts.FlowState(r.Context(), accounts.FlowLogout, handle, &req)
	switch {
	case errors.Is(err, model.ErrNotFound), errors.Is(err, model.ErrSpent):
		return h.Browser.Error(w, r, http.StatusBadRequest, "This sign-out request has expired or was already completed.")
	case err != nil:
		return h.Browser.Fault(w, r, err, "resuming a logout")
	}
	id, err := h.Browser.Identity(w, r)
	if err != nil {
		return h.Browser.Fault(w, r, err, "reading the browser session")
	}
	if id != nil {
		// Not signed out (yet): ask again.
		return h.confirmLogout(w, r, handle)
	}
	if _, err := h.Accounts.TakeFlowState(r.Context(), accounts.FlowLogout, handle, &req); err != nil {
		if errors.Is(err, model.ErrNotFound) || errors.Is(err, model.ErrSpent) {
			return h.Browser.Error(w, r, http.StatusBadRequest, "This sign-out request has expired or was already completed.")
		}
		return h.Browser.Fault(w, r, err, "completing a logout")
	}
	return h.finishLogout(w, r, &req)
}

// finishLogout ends the client session the hint named, then sends the
// visitor to the registered post_logout_redirect_uri or shows the
// signed-out page.
func (h *Handler) finishLogout(w http.ResponseWriter, r *http.Request, req *logoutRequest) error {
	if req.SessionID != "" {
		ctx := accounts.WithClientIP(r.Context(), h.ClientIP(r))
		if err := h.Accounts.EndClientSession(ctx, req.SessionID, req.Subject, req.ClientID); err != nil {
			return h.Browser.Fault(w, r, err, "ending the client session")
		}
	}
	if req.Redirect == "" {
		return h.Browser.SignedOut(w, r)
	}
	target := req.Redirect
	if req.State != "" {
		sep := "?"
		if strings.Contains(target, "?") {
			sep = "&"
		}
		target += sep + url.Values{"state": {req.State}}.Encode()
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusSeeOther)
	return nil
}

package protocol

// The provider upgrade for API clients: an app holding a guest's access
// token asks for a one-time URL (POST PathProviderStart), opens it in a
// browser, and the browser signs in with the provider for THAT guest (the
// pages' provider/<name>/start?handoff=...). The pages then resume an
// authorization request stored here, which sends the browser back to the
// app's redirect URI with a code the token endpoint redeems, as the
// authorization endpoint's: the app gets the member's tokens.

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// PathProviderStart starts a provider sign-in for the guest of the
// request's access token.
const PathProviderStart = "/api/provider-start"

// HandoffTTL is how long the URL PathProviderStart answers can be opened.
const HandoffTTL = 5 * time.Minute

// ProviderHandoff is the flow state (accounts.FlowHandoff) the URL names:
// which guest, which provider, and the authorization request to resume
// once signed in (a path of this site).
type ProviderHandoff struct {
	UserID    string `json:"user_id"`
	SessionID string `json:"session_id"`
	Provider  string `json:"provider"`
	Resume    string `json:"resume"`
}

// ProviderStart answers POST PathProviderStart: Bearer, the guest's access
// token; form or JSON parameters provider, client_id, redirect_uri,
// state, code_challenge (S256, required), nonce and scope, as for the
// authorization endpoint. The answer is {"url", "expires_in"}: a one-time
// URL the app opens in a browser. A member's token is refused (it has
// nothing to upgrade; members link providers on the account page).
// Errors follow RFC 6750 (WWW-Authenticate).
func (h *Handler) ProviderStart(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	id, err := h.identity(r)
	if err != nil {
		return apiAuthError(w, err, h.WriteBearerError)
	}
	raw, err := readParams(w, r)
	if err != nil {
		return h.WriteBearerError(w, err)
	}
	params := url.Values{}
	for k, v := range raw {
		params.Set(k, v)
	}
	bad := func(format string, args ...any) error {
		return h.WriteBearerError(w, &accounts.Error{Code: accounts.CodeInvalidRequest, Description: fmt.Sprintf(format, args...)})
	}
	if !id.User.IsAnonymous() {
		return bad("The access token is a member's, not a guest's: members link providers on the account page.")
	}
	name := params.Get("provider")
	if h.Browser == nil {
		return bad("This site has no sign-in pages, so no providers.")
	}
	if _, ok := h.Browser.ProviderStartURL(r, name, ""); !ok {
		return bad("There is no such provider (see the provider names in the site's configuration).")
	}
	if params.Get("response_type") == "" {
		params.Set("response_type", "code")
	}
	client, redirect, given, msg := h.authorizeTarget(params)
	if msg != "" {
		return bad("%s", msg)
	}
	if client.ID != id.Session.ClientID {
		// The code goes to the client the guest's tokens were issued to.
		return bad("The access token was issued to another client than client_id.")
	}
	req := &authzRequest{ClientID: client.ID, RedirectURI: redirect, RedirectGiven: given, State: params.Get("state"), Guest: id.Session.ID}
	if len(req.State) > maxStateLen {
		return bad("The state is longer than %d bytes.", maxStateLen)
	}
	if aerr := parseAuthorize(params, client, req); aerr != nil {
		return bad("%s", aerr.desc)
	}
	if req.Challenge == "" {
		return bad("code_challenge (PKCE, S256) is required.")
	}
	if req.None || req.Create || req.Fresh || req.LoginHint != "" {
		return bad("prompt and login_hint are not taken here: the browser signs in with the provider.")
	}
	ctx := accounts.WithClientIP(r.Context(), h.ClientIP(r))
	resume, err := h.Accounts.PutFlowState(ctx, accounts.FlowAuthorize, authorizeTTL, req, h.LimitKey(r))
	if err != nil {
		return h.WriteBearerError(w, err)
	}
	handoff, err := h.Accounts.PutFlowState(ctx, accounts.FlowHandoff, HandoffTTL, ProviderHandoff{
		UserID: id.User.ID, SessionID: id.Session.ID, Provider: name,
		Resume: PathAuthorize + "?" + url.Values{"resume": {resume}}.Encode(),
	}, h.LimitKey(r))
	if err != nil {
		return h.WriteBearerError(w, err)
	}
	u, _ := h.Browser.ProviderStartURL(r, name, handoff)
	return WriteJSON(w, http.StatusOK, map[string]any{"url": u, "expires_in": int(HandoffTTL / time.Second)})
}

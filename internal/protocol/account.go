package protocol

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// envelope is Casdoor's API response shape; the HTTP status agrees with it,
// so plain HTTP clients need not parse the body to see a failure.
type envelope struct {
	Status string `json:"status"` // "ok" or "error"
	Msg    string `json:"msg"`
	Data   any    `json:"data"`
	Data2  any    `json:"data2"`
	// Tokens is the caller's new token set after update-user changed the
	// password (the session's previous refresh token no longer works).
	Tokens *accounts.TokenResponse `json:"tokens,omitempty"`
}

// identity authenticates an API call by its Authorization header only
// (never a cookie, so a cross-site form cannot act for the user). Its
// errors are answered by the endpoint's writer (outcomes.go).
func (h *Handler) identity(r *http.Request) (*accounts.Identity, error) {
	raw, _, present, malformed := Credential(r, "")
	switch {
	case malformed:
		return nil, errMalformedAuthz
	case !present:
		return nil, errNoToken
	}
	return h.Accounts.Authenticate(r.Context(), raw, h.Issuer(r))
}

// apiAuthError answers a failed identity with write; a server fault
// (the store failing) is passed on to Caddy's error handling, as before.
func apiAuthError(w http.ResponseWriter, err error, write func(http.ResponseWriter, error) error) error {
	var inv *tokens.InvalidError
	var af *authError
	if errors.As(err, &inv) || errors.As(err, &af) || errors.Is(err, model.ErrUnavailable) {
		return write(w, err)
	}
	return err
}

// UpdateUser upgrades or edits the caller's account (Casdoor's
// update-user, as the seeds' upgradeGuestUser calls it), POST; called
// with a client's credentials instead of an access token, it is a
// managing client's update of any user (manageUpdateUser).
func (h *Handler) UpdateUser(w http.ResponseWriter, r *http.Request) error {
	if isManagerCall(r) {
		return h.manageUpdateUser(w, r)
	}
	id, err := h.identity(r)
	if err != nil {
		return apiAuthError(w, err, h.writeEnvelopeError)
	}
	params, err := readParams(w, r)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	upd := accounts.ProfileUpdate{
		Name:        param(params, "name"),
		DisplayName: param(params, "displayName", "display_name"),
		Password:    param(params, "password"),
		OldPassword: param(params, "oldPassword", "old_password"),
		ClientIP:    h.LimitKey(r),
		Issuer:      h.Issuer(r),
	}
	// Casdoor's SDKs send the whole user: an empty or unchanged address
	// is no change (and mails nothing).
	email := param(params, "email")
	if email != nil && (strings.TrimSpace(*email) == "" || model.EmailKey(*email) == model.EmailKey(id.User.Email)) {
		email = nil
	}
	if email != nil && (!h.Accounts.EmailEnabled() || h.LinkBase == nil) {
		return h.writeEnvelopeError(w, &accounts.Error{Code: accounts.CodeNoEmail, Description: "Email is not configured on this site."})
	}
	if email != nil {
		// Checked before any other change is written.
		if _, err := accounts.NormalizeEmail(*email); err != nil {
			return h.writeEnvelopeError(w, err)
		}
	}
	u := id.User
	var issued *accounts.TokenResponse
	if upd.Name != nil || upd.DisplayName != nil || upd.Password != nil || email == nil {
		res, err := h.Accounts.UpdateProfile(r.Context(), id, upd)
		if err != nil {
			return h.writeEnvelopeError(w, err)
		}
		u, issued = res.User, res.Tokens
	}
	if email != nil {
		var err error
		u, err = h.Accounts.SetEmail(r.Context(), &accounts.Identity{User: u, Session: id.Session, Claims: id.Claims},
			accounts.SetEmailRequest{Email: *email, LinkBase: h.LinkBase(r), ClientIP: h.LimitKey(r)})
		if err != nil {
			return h.writeEnvelopeError(w, err)
		}
	}
	return WriteJSON(w, http.StatusOK, envelope{Status: "ok", Data: "Affected", Data2: accountView(u), Tokens: issued})
}

// Paths of the email API (with email configured).
const (
	PathForgotPassword = "/api/forgot-password"
	PathResetPassword  = "/api/reset-password" //nolint:gosec // G101: a path, no credentials
)

// ForgotPassword mails a reset link to the user whose verified address
// the email parameter is, POST; the answer is the same whether or not
// there is one (Casdoor's envelope, status ok), except for a malformed
// address (400) and the limits (429).
func (h *Handler) ForgotPassword(w http.ResponseWriter, r *http.Request) error {
	if !h.Accounts.EmailEnabled() || h.LinkBase == nil {
		return h.writeEnvelopeError(w, &accounts.Error{Code: accounts.CodeNoEmail, Description: "Email is not configured on this site."})
	}
	params, err := readParams(w, r)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	ctx := accounts.WithClientIP(r.Context(), h.ClientIP(r))
	if err := h.Accounts.ForgotPassword(ctx, accounts.EmailLinkRequest{Email: params["email"], LinkBase: h.LinkBase(r), ClientIP: h.LimitKey(r)}); err != nil {
		return h.writeEnvelopeError(w, err)
	}
	return WriteJSON(w, http.StatusOK, envelope{Status: "ok", Data: "If an account has this verified address, a link is on its way to it."})
}

// ResetPassword sets a new password with a reset link's token (the token
// and password parameters), POST; every session of the user ends, and the
// client signs in again with the new password.
func (h *Handler) ResetPassword(w http.ResponseWriter, r *http.Request) error {
	if !h.Accounts.EmailEnabled() {
		return h.writeEnvelopeError(w, &accounts.Error{Code: accounts.CodeNoEmail, Description: "Email is not configured on this site."})
	}
	params, err := readParams(w, r)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	ctx := accounts.WithClientIP(r.Context(), h.ClientIP(r))
	u, err := h.Accounts.ResetPasswordAPI(ctx, accounts.ResetRequest{Handle: params["token"], Password: params["password"], Issuer: h.Issuer(r), ClientIP: h.LimitKey(r)})
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	return WriteJSON(w, http.StatusOK, envelope{Status: "ok", Data: "Affected", Data2: accountView(u)})
}

// param returns the first present parameter among names.
func param(params map[string]string, names ...string) *string {
	for _, n := range names {
		if v, ok := params[n]; ok {
			return &v
		}
	}
	return nil
}

// accountView is the public view of a user, in Casdoor's field names; it
// never includes the password hash.
func accountView(u *model.User) map[string]any {
	return map[string]any{
		"id":          u.ID,
		"name":        u.Name,
		"displayName": u.DisplayName,
		"tag":         u.Tag,
		"isAnonymous": u.IsAnonymous(),
		"hasPassword": u.PasswordHash != "",
		// Casdoor's names; the address counts once emailVerified.
		"email":         u.Email,
		"emailVerified": u.EmailVerified,
		"createdTime":   u.CreatedAt,
		"updatedTime":   u.UpdatedAt,
	}
}

// GetAccount is the caller's account (Casdoor's get-account), GET.
func (h *Handler) GetAccount(w http.ResponseWriter, r *http.Request) error {
	id, err := h.identity(r)
	if err != nil {
		return apiAuthError(w, err, h.writeEnvelopeError)
	}
	return WriteJSON(w, http.StatusOK, envelope{Status: "ok", Data: accountView(id.User)})
}

// Logout ends the caller's session (Casdoor's logout), POST.
func (h *Handler) Logout(w http.ResponseWriter, r *http.Request) error {
	id, err := h.identity(r)
	if err != nil {
		return apiAuthError(w, err, h.writeEnvelopeError)
	}
	if err := h.Accounts.Logout(r.Context(), id); err != nil {
		return h.writeEnvelopeError(w, err)
	}
	return WriteJSON(w, http.StatusOK, envelope{Status: "ok", Data: "Affected"})
}

// UserInfo is OIDC UserInfo (GET or POST, Bearer header).
func (h *Handler) UserInfo(w http.ResponseWriter, r *http.Request) error {
	id, err := h.identity(r)
	if err != nil {
		return apiAuthError(w, err, h.WriteBearerError)
	}
	scope := ""
	if id.Claims != nil {
		scope = id.Claims.Scope
	}
	return WriteJSON(w, http.StatusOK, accounts.UserInfo(id.User, scope))
}

// Revoke is RFC 7009 token revocation, POST.
func (h *Handler) Revoke(w http.ResponseWriter, r *http.Request) error {
	params, err := readParams(w, r)
	if err != nil {
		return h.writeOAuthError(w, err)
	}
	token := params["token"]
	var client *Client
	if _, _, basic := r.BasicAuth(); !basic && params["client_id"] == "" && token != "" {
		// No client named: a public client's token names its own (as
		// Authgear's SDK revokes: token alone).
		if client, err = h.tokenClient(r, token); err != nil || client == nil {
			return h.revoked(w, err)
		}
	} else if client, err = h.authenticateClient(r, params); err != nil {
		return h.writeOAuthError(w, err)
	}
	if token == "" {
		return h.writeOAuthError(w, badRequest("The token parameter is missing."))
	}
	if err := h.Accounts.Revoke(r.Context(), h.Issuer(r), client.ID, token); err != nil {
		return h.writeOAuthError(w, err)
	}
	return h.revoked(w, nil)
}

// revoked answers a revocation: 200 (RFC 7009 §2.2), or err.
func (h *Handler) revoked(w http.ResponseWriter, err error) error {
	if err != nil {
		return h.writeOAuthError(w, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// tokenClient is the public client a token presented without client
// authentication was issued to. A token of no client (unknown, invalid,
// expired) is nil without an error: there is nothing to revoke (RFC 7009
// §2.2). A confidential client's token needs that client's credentials.
func (h *Handler) tokenClient(r *http.Request, token string) (*Client, error) {
	id, err := h.Accounts.TokenClient(r.Context(), h.Issuer(r), token)
	if err != nil || id == "" {
		return nil, err
	}
	c := h.Clients[id]
	switch {
	case c == nil:
		return nil, nil
	case !c.Public:
		return nil, clientError(false, "This token's client must authenticate to revoke it.")
	}
	return c, nil
}

// IPLimitKey is the key of every per-IP limit (sign-in, guest creation,
// challenges, name changes) for a client at ip: ip masked to its first v4
// (IPv4) or v6 (IPv6) bits, so a client rotating addresses within its IPv6
// /64 still has one bucket. An IPv4-mapped IPv6 address counts as the IPv4
// address; a zone is dropped.
// A value that is not an IP address (none known) is its own key.
func IPLimitKey(ip string, v4, v6 int) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return a.String()
	}
	return p.String()
}

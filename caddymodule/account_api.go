package caddymodule

import (
	"errors"
	"net/http"
	"net/netip"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// Paths of the account API (Casdoor's names) and UserInfo.
const (
	PathUpdateUser    = "/api/update-user"
	PathGetAccount    = "/api/get-account"
	PathLogout        = "/api/logout"
	PathUserInfo      = "/api/userinfo"
	PathUserInfoOAuth = "/oauth/userinfo"
	PathRevoke        = "/oauth/revoke"
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

// apiIdentity authenticates an API call by its Authorization header only
// (never the cookie, so a cross-site form cannot act for the user). Its
// errors are answered by the endpoint's writer (outcomes.go).
func (g *GuestAuth) apiIdentity(r *http.Request) (*accounts.Identity, error) {
	raw, present, malformed := bearerToken(r, "")
	switch {
	case malformed:
		return nil, errMalformedAuthz
	case !present:
		return nil, errNoToken
	}
	return g.authenticate(r, raw)
}

// apiAuthError answers a failed apiIdentity with write; a server fault
// (the store failing) is passed on to Caddy's error handling, as before.
func (g *GuestAuth) apiAuthError(w http.ResponseWriter, err error, write func(http.ResponseWriter, error) error) error {
	var inv *tokens.InvalidError
	var af *authError
	if errors.As(err, &inv) || errors.As(err, &af) || errors.Is(err, model.ErrUnavailable) {
		return write(w, err)
	}
	return err
}

func requirePost(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	_ = writeJSON(w, http.StatusMethodNotAllowed, envelope{Status: "error", Msg: "Use POST."}) // the 405 is the answer; a write error is the client gone
	return false
}

// serveUpdateUser upgrades or edits the caller's account (Casdoor's
// update-user, as the seeds' upgradeGuestUser calls it).
func (g *GuestAuth) serveUpdateUser(w http.ResponseWriter, r *http.Request) error {
	if !requirePost(w, r) {
		return nil
	}
	id, err := g.apiIdentity(r)
	if err != nil {
		return g.apiAuthError(w, err, g.writeEnvelopeError)
	}
	params, err := readParams(w, r)
	if err != nil {
		return g.writeEnvelopeError(w, err)
	}
	upd := accounts.ProfileUpdate{
		Name:        param(params, "name"),
		DisplayName: param(params, "displayName", "display_name"),
		Password:    param(params, "password"),
		OldPassword: param(params, "oldPassword", "old_password"),
		ClientIP:    g.limitKey(r),
		Issuer:      g.issuerFor(r),
	}
	res, err := g.svc.UpdateProfile(r.Context(), id, upd)
	if err != nil {
		return g.writeEnvelopeError(w, err)
	}
	return writeJSON(w, http.StatusOK, envelope{Status: "ok", Data: "Affected", Data2: accountView(res.User), Tokens: res.Tokens})
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
		"createdTime": u.CreatedAt,
		"updatedTime": u.UpdatedAt,
	}
}

func (g *GuestAuth) serveGetAccount(w http.ResponseWriter, r *http.Request) error {
	if !allowGet(w, r) {
		return nil
	}
	id, err := g.apiIdentity(r)
	if err != nil {
		return g.apiAuthError(w, err, g.writeEnvelopeError)
	}
	return writeJSON(w, http.StatusOK, envelope{Status: "ok", Data: accountView(id.User)})
}

func (g *GuestAuth) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if !requirePost(w, r) {
		return nil
	}
	id, err := g.apiIdentity(r)
	if err != nil {
		return g.apiAuthError(w, err, g.writeEnvelopeError)
	}
	if err := g.svc.Logout(r.Context(), id); err != nil {
		return g.writeEnvelopeError(w, err)
	}
	return writeJSON(w, http.StatusOK, envelope{Status: "ok", Data: "Affected"})
}

// serveUserInfo is OIDC UserInfo (GET or POST, Bearer header).
func (g *GuestAuth) serveUserInfo(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		return bearerError(w, http.StatusMethodNotAllowed, "invalid_request", "Use GET or POST.")
	}
	id, err := g.apiIdentity(r)
	if err != nil {
		return g.apiAuthError(w, err, g.writeBearerError)
	}
	return writeJSON(w, http.StatusOK, accounts.UserInfo(id.User))
}

// serveRevoke is RFC 7009 token revocation.
func (g *GuestAuth) serveRevoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeJSON(w, http.StatusMethodNotAllowed, oauthError{Error: accounts.CodeInvalidRequest, Description: "The revocation endpoint accepts POST only."})
	}
	params, err := readParams(w, r)
	if err != nil {
		return g.writeOAuthError(w, err)
	}
	client, err := g.authenticateClient(r, params)
	if err != nil {
		return g.writeOAuthError(w, err)
	}
	token := params["token"]
	if token == "" {
		return g.writeOAuthError(w, badRequest("The token parameter is missing."))
	}
	if err := g.svc.Revoke(r.Context(), g.issuerFor(r), client.ClientID, token); err != nil {
		return g.writeOAuthError(w, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	return nil
}

// clientIP is Caddy's client IP for r (which honours the server's
// trusted_proxies), as reported in events. Limits key on limitKey instead.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

// limitKey is the key of every per-IP limit (sign-in, guest creation,
// challenges, name changes) for r: the client IP's network, by
// ip_prefix_v4 and ip_prefix_v6 bits, so a client rotating addresses within
// its IPv6 /64 still has one bucket.
func (g *GuestAuth) limitKey(r *http.Request) string {
	return ipLimitKey(clientIP(r), g.IPPrefixV4, g.IPPrefixV6)
}

// ipLimitKey masks ip to its first v4 (IPv4) or v6 (IPv6) bits. An
// IPv4-mapped IPv6 address counts as the IPv4 address; a zone is dropped.
// A value that is not an IP address (none known) is its own key.
func ipLimitKey(ip string, v4, v6 int) string {
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

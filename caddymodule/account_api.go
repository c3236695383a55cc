package caddymodule

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/accounts"
	"github.com/guestauth/caddy-guestauth/events"
	"github.com/guestauth/caddy-guestauth/metrics"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/tokens"
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

var profileStatus = map[string]int{
	accounts.CodeInvalidRequest:  http.StatusBadRequest,
	accounts.CodeInvalidName:     http.StatusBadRequest,
	accounts.CodeInvalidPassword: http.StatusBadRequest,
	accounts.CodeWrongPassword:   http.StatusBadRequest,
	accounts.CodeNameTaken:       http.StatusConflict,
	accounts.CodeConflict:        http.StatusConflict,
	accounts.CodeInvalidGrant:    http.StatusUnauthorized,
}

// writeEnvelopeError answers err in Casdoor's envelope.
func (g *GuestAuth) writeEnvelopeError(w http.ResponseWriter, err error) error {
	var ae *accounts.Error
	var te *accounts.ThrottledError
	switch {
	case errors.As(err, &te):
		metrics.RateLimited(te.Limit)
		w.Header().Set("Retry-After", strconv.FormatInt(te.RetrySeconds(), 10))
		return writeJSON(w, http.StatusTooManyRequests, envelope{Status: "error", Msg: te.Error()})
	case errors.As(err, &ae):
		status, ok := profileStatus[ae.Code]
		if !ok {
			status = http.StatusBadRequest
		}
		return writeJSON(w, status, envelope{Status: "error", Msg: ae.Description, Data: ae.Code})
	}
	if g.storeUnavailable(w, err, "account API") {
		return writeJSON(w, http.StatusServiceUnavailable, envelope{Status: "error", Msg: unavailableText})
	}
	g.logger.Error("account API", zap.Error(err))
	return writeJSON(w, http.StatusInternalServerError, envelope{Status: "error", Msg: "The request could not be completed."})
}

// apiIdentity authenticates an API call by its Authorization header only
// (never the cookie, so a cross-site form cannot act for the user). On
// failure it has already answered, through fail.
func (g *GuestAuth) apiIdentity(w http.ResponseWriter, r *http.Request, fail func(status int, code, desc string) error) (*accounts.Identity, error) {
	raw, present, malformed := bearerToken(r, "")
	switch {
	case malformed:
		return nil, fail(http.StatusBadRequest, "invalid_request", "The Authorization header is malformed.")
	case !present:
		return nil, fail(http.StatusUnauthorized, "", "An access token is required.")
	}
	id, err := g.authenticate(r, raw)
	if err != nil {
		var inv *tokens.InvalidError
		if errors.As(err, &inv) {
			return nil, fail(http.StatusUnauthorized, "invalid_token", tokenErrorText[inv.Reason])
		}
		return nil, err
	}
	return id, nil
}

// envelopeFail answers an authentication failure in Casdoor's envelope, with
// the RFC 6750 challenge.
func envelopeFail(w http.ResponseWriter) func(int, string, string) error {
	return func(status int, code, desc string) error {
		setBearerChallenge(w, code, desc)
		return writeJSON(w, status, envelope{Status: "error", Msg: desc, Data: code})
	}
}

// bearerFail answers an authentication failure as RFC 6750 JSON.
func bearerFail(w http.ResponseWriter) func(int, string, string) error {
	return func(status int, code, desc string) error { return bearerError(w, status, code, desc) }
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
	id, err := g.apiIdentity(w, r, envelopeFail(w))
	if id == nil {
		return err
	}
	params, err := readParams(w, r)
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			return writeJSON(w, he.status, envelope{Status: "error", Msg: he.err.Description, Data: he.err.Code})
		}
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
	if res.Upgraded {
		g.emit(events.Event{Type: events.GuestUpgraded, UserID: res.User.ID, ClientID: id.Session.ClientID, Data: map[string]any{"old_name": res.OldName, "new_name": res.User.Name}})
	}
	if res.EndedSessions > 0 {
		g.emit(events.Event{Type: events.SessionRevoked, UserID: res.User.ID, Data: map[string]any{"sessions": res.EndedSessions, "cause": "password_changed"}})
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
func accountView(u *storage.User) map[string]any {
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
	id, err := g.apiIdentity(w, r, envelopeFail(w))
	if id == nil {
		return err
	}
	return writeJSON(w, http.StatusOK, envelope{Status: "ok", Data: accountView(id.User)})
}

func (g *GuestAuth) serveLogout(w http.ResponseWriter, r *http.Request) error {
	if !requirePost(w, r) {
		return nil
	}
	id, err := g.apiIdentity(w, r, envelopeFail(w))
	if id == nil {
		return err
	}
	if err := g.svc.Logout(r.Context(), id); err != nil {
		return g.writeEnvelopeError(w, err)
	}
	g.emit(events.Event{Type: events.SessionRevoked, UserID: id.User.ID, ClientID: id.Session.ClientID, Data: map[string]any{"cause": "logout"}})
	return writeJSON(w, http.StatusOK, envelope{Status: "ok", Data: "Affected"})
}

// serveUserInfo is OIDC UserInfo (GET or POST, Bearer header).
func (g *GuestAuth) serveUserInfo(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		return bearerError(w, http.StatusMethodNotAllowed, "invalid_request", "Use GET or POST.")
	}
	id, err := g.apiIdentity(w, r, bearerFail(w))
	if id == nil {
		return err
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

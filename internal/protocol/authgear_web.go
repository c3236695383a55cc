package protocol

// Authgear's web anonymous users, as the @authgear/web SDK calls them:
// POST /api/anonymous_user/signup (a guest for the SDK's client, or the
// same guest again with its refresh token), POST
// /api/anonymous_user/promotion_code (a single-use code to promote the
// guest), and the promotion itself through the authorization endpoint,
// whose login_hint carries the code (Promotion). The SDK finds these paths
// at the origin of the discovery document's authorization_endpoint. Its
// API answers are Authgear's envelope: {"result": ...} with HTTP 200, or
// {"error": {name, reason, message, code}}. The logic is in
// accounts/promotion.go.

import (
	"context"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Paths of Authgear's anonymous user API.
const (
	PathAnonymousSignup = "/api/anonymous_user/signup"
	PathPromotionCode   = "/api/anonymous_user/promotion_code"
)

// Authgear's session types: refresh_token is the web SDK's default; cookie
// (Authgear's own IdP session cookie) is not served here.
const (
	sessionRefreshToken = "refresh_token"
	sessionCookie       = "cookie"
)

// maxAuthgearBody bounds the bodies of the anonymous user API: a client
// id, a session type and a refresh token.
const maxAuthgearBody = 4 << 10

// authgearTokens is the token response of the anonymous sign-up, as
// Authgear's schema has it (token_type, access_token, expires_in required).
type authgearTokens struct {
	TokenType    string `json:"token_type"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
}

type authgearPromotion struct {
	PromotionCode string    `json:"promotion_code"`
	ExpireAt      time.Time `json:"expire_at"`
}

// readAuthgearBody reads a JSON object of string members, each one of
// names (Authgear's schemas: additionalProperties false). ok is false when
// the refusal was written.
func (h *Handler) readAuthgearBody(w http.ResponseWriter, r *http.Request, names ...string) (params map[string]string, ok bool, err error) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return nil, false, writeAuthgearError(w, http.StatusBadRequest, "BadRequest", "InvalidContentType", "The Content-Type must be application/json.")
	}
	body, err := readBody(w, r, maxAuthgearBody)
	if err != nil {
		return nil, false, h.writeAuthgearAPIError(w, err)
	}
	params = map[string]string{}
	known := map[string]bool{}
	for _, n := range names {
		known[n] = true
	}
	unknown := false
	err = walkFlatJSON(body, func(k string, v *string) {
		switch {
		case !known[k]:
			unknown = true
		case v != nil:
			params[k] = *v
		}
	})
	if err != nil || unknown {
		return nil, false, writeAuthgearError(w, http.StatusBadRequest, "Invalid", "ValidationFailed", "The body must be a JSON object of strings, with only these members: "+strings.Join(names, ", ")+".")
	}
	return params, true, nil
}

// checkSessionType refuses a missing or unserved session_type; ok is false
// when the refusal was written.
func checkSessionType(w http.ResponseWriter, params map[string]string) (ok bool, err error) {
	switch params["session_type"] {
	case sessionRefreshToken:
		return true, nil
	case sessionCookie:
		return false, writeAuthgearError(w, http.StatusBadRequest, "Invalid", "ValidationFailed", "session_type cookie is not supported here: use refresh_token.")
	case "":
		return false, writeAuthgearError(w, http.StatusBadRequest, "Invalid", "ValidationFailed", "session_type is required.")
	}
	return false, writeAuthgearError(w, http.StatusBadRequest, "Invalid", "ValidationFailed", "session_type must be refresh_token or cookie.")
}

// AnonymousSignup is Authgear's web anonymous sign-up, POST JSON
// {client_id, session_type, refresh_token?}: a new guest for the client,
// whose guest policy must include web (guest.created, via "web"), under the
// guest creation limits; with the refresh token of a guest, the same guest
// signed in again (the refresh_token grant). Answers
// {"result": {token_type, access_token, refresh_token, id_token, expires_in}}.
func (h *Handler) AnonymousSignup(w http.ResponseWriter, r *http.Request) error {
	r = r.WithContext(accounts.WithClientIP(r.Context(), h.ClientIP(r)))
	params, ok, err := h.readAuthgearBody(w, r, "client_id", "session_type", "refresh_token")
	if !ok {
		return err
	}
	if ok, err := checkSessionType(w, params); !ok {
		return err
	}
	client := h.Clients[params["client_id"]]
	if client == nil {
		return writeAuthgearError(w, http.StatusBadRequest, "Invalid", "Invalid", "invalid client ID")
	}
	if err := client.allowGuests(GuestsWeb); err != nil {
		return h.writeAuthgearAPIError(w, err)
	}
	var issued *accounts.Issued
	if rt := params["refresh_token"]; rt != "" {
		issued, err = h.Accounts.GuestRefresh(r.Context(), h.Issuer(r), client.ID, rt)
	} else {
		issued, err = h.Accounts.CreateWebGuest(r.Context(), h.Issuer(r), client.ID, h.LimitKey(r))
	}
	if err != nil {
		return h.writeAuthgearAPIError(w, err)
	}
	t := issued.Tokens
	return WriteJSON(w, http.StatusOK, authgearEnvelope{Result: authgearTokens{
		TokenType: t.TokenType, AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, IDToken: t.IDToken, ExpiresIn: t.ExpiresIn,
	}})
}

// AnonymousPromotionCode is Authgear's promotion code request, POST JSON
// {session_type, refresh_token}: a single-use code, valid five minutes,
// for the guest whose current refresh token it is, to put in the
// login_hint of an authorization request (see Promotion). Answers
// {"result": {promotion_code, expire_at}}.
func (h *Handler) AnonymousPromotionCode(w http.ResponseWriter, r *http.Request) error {
	params, ok, err := h.readAuthgearBody(w, r, "session_type", "refresh_token")
	if !ok {
		return err
	}
	if ok, err := checkSessionType(w, params); !ok {
		return err
	}
	rt := params["refresh_token"]
	if rt == "" {
		return writeAuthgearError(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized", "authentication required")
	}
	code, err := h.Accounts.NewPromotionCode(r.Context(), rt, h.LimitKey(r))
	if err != nil {
		return h.writeAuthgearAPIError(w, err)
	}
	return WriteJSON(w, http.StatusOK, authgearEnvelope{Result: authgearPromotion{PromotionCode: code.Code, ExpireAt: code.ExpiresAt}})
}

// PromotionCode returns the promotion code of Authgear's anonymous
// login_hint, https://authgear.com/login_hint?type=anonymous&promotion_code=<code>
// (as @authgear/web's startPromoteAnonymousUser sends it, URL-encoded in
// the authorization request); ok is false for any other login_hint.
func PromotionCode(loginHint string) (code string, ok bool) {
	u, err := url.Parse(loginHint)
	if err != nil || u.Scheme != "https" || u.Host != "authgear.com" || u.Path != "/login_hint" {
		return "", false
	}
	q := u.Query()
	if q.Get("type") != "anonymous" || len(q["promotion_code"]) != 1 || q.Get("promotion_code") == "" {
		return "", false
	}
	return q.Get("promotion_code"), true
}

// Promotion resolves the login_hint of an authorization request of
// clientID. For Authgear's anonymous login_hint (PromotionCode) it takes
// the promotion code, once, and returns the guest whose sign-up is to
// promote it (promote true); for any other login_hint it returns
// promote false and does nothing. A code that is invalid, used, expired,
// of another client or whose guest is gone or no longer a guest is an
// *accounts.Error with code invalid_grant; a store failure is returned as
// it is (model.ErrUnavailable: a 503).
//
// The authorization endpoint calls it once, when the request arrives
// (Handler.promote): the browser gets a session of the guest and is sent
// to the sign-up page, where the guest's upgrade (the same id, now
// normal-user, a new session) is the sign-in the request waits for.
func (h *Handler) Promotion(ctx context.Context, loginHint, clientID string) (guest *model.User, promote bool, err error) {
	code, ok := PromotionCode(loginHint)
	if !ok {
		return nil, false, nil
	}
	u, err := h.Accounts.ConsumePromotionCode(ctx, code, clientID)
	if err != nil {
		return nil, true, err
	}
	return u, true, nil
}

// writeAuthgearAPIError answers err in Authgear's envelope (the anonymous
// user API): a body too slow 408, too large 413, a refused refresh token
// 400 InvalidGrant (the SDK then forgets its session), another refusal 400
// Invalid, a limit 429, a store outage 503, both with Retry-After.
func (h *Handler) writeAuthgearAPIError(w http.ResponseWriter, err error) error {
	f := Classify(h.Logger, err, "anonymous user API")
	switch f.Kind {
	case FailGone:
		w.WriteHeader(f.Status)
		return nil
	case FailHTTP:
		switch f.Status {
		case http.StatusRequestTimeout:
			return writeAuthgearError(w, f.Status, "RequestTimeout", "RequestTimeout", f.Desc)
		case http.StatusRequestEntityTooLarge:
			return writeAuthgearError(w, f.Status, "RequestEntityTooLarge", "RequestEntityTooLarge", f.Desc)
		}
		return writeAuthgearError(w, http.StatusBadRequest, "Invalid", "Invalid", f.Desc)
	case FailThrottled:
		SetRetryAfter(w, f)
		return writeAuthgearError(w, f.Status, "TooManyRequest", "RateLimited", f.Desc)
	case FailUnavailable:
		SetRetryAfter(w, f)
		return writeAuthgearError(w, f.Status, "ServiceUnavailable", "StorageUnavailable", f.Desc)
	case FailDomain:
		if f.Code == accounts.CodeInvalidGrant {
			return writeAuthgearError(w, http.StatusBadRequest, "Invalid", "InvalidGrant", f.Desc)
		}
		return writeAuthgearError(w, http.StatusBadRequest, "Invalid", "Invalid", f.Desc)
	case FailToken, FailAuth:
		return writeAuthgearError(w, http.StatusUnauthorized, "Unauthorized", "Unauthorized", f.Desc)
	}
	return writeAuthgearError(w, http.StatusInternalServerError, "InternalError", "UnexpectedError", internalText)
}

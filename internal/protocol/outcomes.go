package protocol

// One path for domain outcomes: every error a handler answers goes through
// Classify, which sorts it once (a refusal the client can be told, a limit,
// a refused token, a missing credential, or a server fault) and counts the
// metrics that go with it; one small writer per protocol then turns the
// classification into that protocol's status, headers and body:
//
//   - writeOAuthError: RFC 6749 §5.2 JSON (token and revocation endpoints);
//   - writeEnvelopeError: Casdoor's envelope (/api/update-user, get-account,
//     logout, and the user API of managing clients);
//   - writeChallengeError: Authgear's envelope (/oauth2/challenge);
//   - WriteBearerError: RFC 6750 (UserInfo, proxied requests);
//
// and the browser pages (internal/pages) show the same classification in
// HTML.
//
// A store that cannot be reached (model.ErrUnavailable) is a 503 with
// Retry-After in each of them: never a 500 with a driver message, never
// treated as anonymous.
//
// Every path therefore counts caddy_guest_auth_rate_limited_total for a
// limit and caddy_guest_auth_token_verification_failures_total for a
// refused access token, whichever endpoint refused it.

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// Kind sorts a Failure.
type Kind int

// The kinds of Failure.
const (
	FailInternal    Kind = iota // a server fault: logged, answered 500 without detail
	FailDomain                  // an *accounts.Error the client can be shown
	FailHTTP                    // an *httpError: a domain error with its own status
	FailThrottled               // an *accounts.ThrottledError: 429 with Retry-After
	FailToken                   // a *tokens.InvalidError: the access token is refused
	FailAuth                    // an *authError: no usable credential was offered
	FailUnavailable             // model.ErrUnavailable: 503 with Retry-After, never anonymous
	FailGone                    // the client went away (its request's context ended): 499, no body
)

// statusClientClosed is what the access log shows for a request whose
// client went away before the answer, as reverse_proxy records it.
const statusClientClosed = 499

// Failure is a classified error.
type Failure struct {
	Kind      Kind
	Status    int    // FailHTTP and FailAuth: the status to answer
	challenge string // FailHTTP: a WWW-Authenticate value, if any
	Code      string // the OAuth / RFC 6750 error code ("" for a bare challenge)
	Desc      string // a sentence the client may see
	Retry     int64  // FailThrottled: Retry-After seconds
	Err       error  // FailInternal: the fault, for the caller that passes it on
}

// authError is an API request without a usable Authorization header.
type authError struct {
	status     int
	code, desc string
}

func (e *authError) Error() string { return e.desc }

var (
	errNoToken        = &authError{status: http.StatusUnauthorized, desc: "An access token is required."}
	errMalformedAuthz = &authError{status: http.StatusBadRequest, code: "invalid_request", desc: "The Authorization header is malformed."}
)

// Classify sorts err and counts its metrics; a server fault is logged with
// where as the message.
func Classify(log *zap.Logger, err error, where string) Failure {
	var he *httpError
	var te *accounts.ThrottledError
	var inv *tokens.InvalidError
	var af *authError
	var ae *accounts.Error
	switch {
	case errors.As(err, &he):
		return Failure{Kind: FailHTTP, Status: he.status, challenge: he.challenge, Code: he.err.Code, Desc: he.err.Description}
	case errors.As(err, &te):
		metrics.RateLimited(te.Limit)
		return Failure{Kind: FailThrottled, Status: http.StatusTooManyRequests, Desc: te.Error(), Retry: te.RetrySeconds()}
	case errors.As(err, &inv):
		log.Debug("access token refused", zap.String("reason", inv.Reason))
		metrics.TokenRejected(inv.Reason)
		return Failure{Kind: FailToken, Status: http.StatusUnauthorized, Code: "invalid_token", Desc: tokenErrorText[inv.Reason]}
	case errors.As(err, &af):
		return Failure{Kind: FailAuth, Status: af.status, Code: af.code, Desc: af.desc}
	case errors.As(err, &ae):
		return Failure{Kind: FailDomain, Code: ae.Code, Desc: ae.Description}
	case errors.Is(err, context.Canceled):
		// Not a server fault: nobody is left to answer.
		log.Debug("client went away", zap.String("during", where))
		return Failure{Kind: FailGone, Status: statusClientClosed}
	case errors.Is(err, model.ErrUnavailable):
		// The driver's message is logged, never sent.
		log.Warn("storage unavailable", zap.String("during", where), zap.Error(err))
		return Failure{Kind: FailUnavailable, Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Desc: unavailableText, Retry: unavailableRetry}
	}
	log.Error(where, zap.Error(err))
	return Failure{Kind: FailInternal, Status: http.StatusInternalServerError, Err: err}
}

const internalText = "The request could not be completed."

// SetRetryAfter sets the Retry-After of a throttled or unavailable f.
func SetRetryAfter(w http.ResponseWriter, f Failure) {
	w.Header().Set("Retry-After", strconv.FormatInt(f.Retry, 10))
}

// writeOAuthError answers err as RFC 6749 §5.2 JSON; any error that is not
// a domain error is a server fault, logged and answered 500 without detail.
func (h *Handler) writeOAuthError(w http.ResponseWriter, err error) error {
	f := Classify(h.Logger, err, "token endpoint")
	switch f.Kind {
	case FailGone:
		w.WriteHeader(f.Status)
		return nil
	case FailHTTP:
		if f.challenge != "" {
			w.Header().Set("WWW-Authenticate", f.challenge)
		}
		return WriteJSON(w, f.Status, oauthError{Error: f.Code, Description: f.Desc})
	case FailThrottled, FailUnavailable:
		SetRetryAfter(w, f)
		return WriteJSON(w, f.Status, oauthError{Error: "temporarily_unavailable", Description: f.Desc})
	case FailDomain, FailToken, FailAuth:
		status, ok := oauthStatus[f.Code]
		if !ok {
			status = http.StatusBadRequest
		}
		return WriteJSON(w, status, oauthError{Error: f.Code, Description: f.Desc})
	}
	return WriteJSON(w, http.StatusInternalServerError, oauthError{Error: "server_error", Description: internalText})
}

// oauthStatus maps RFC 6749 §5.2 error codes to HTTP statuses.
var oauthStatus = map[string]int{
	accounts.CodeInvalidRequest:       http.StatusBadRequest,
	accounts.CodeInvalidClient:        http.StatusUnauthorized,
	accounts.CodeInvalidGrant:         http.StatusBadRequest,
	accounts.CodeUnauthorizedClient:   http.StatusBadRequest,
	accounts.CodeUnsupportedGrantType: http.StatusBadRequest,
}

// AccountStatus is the HTTP status of a refusal (an *accounts.Error's code)
// in the account API, as the browser pages show it too.
func AccountStatus(code string) int {
	if status, ok := profileStatus[code]; ok {
		return status
	}
	return http.StatusBadRequest
}

// profileStatus maps domain error codes to the account API's statuses.
var profileStatus = map[string]int{
	accounts.CodeInvalidRequest:  http.StatusBadRequest,
	accounts.CodeInvalidName:     http.StatusBadRequest,
	accounts.CodeInvalidPassword: http.StatusBadRequest,
	accounts.CodeWrongPassword:   http.StatusBadRequest,
	accounts.CodeNameTaken:       http.StatusConflict,
	accounts.CodeConflict:        http.StatusConflict,
	accounts.CodeInvalidGrant:    http.StatusUnauthorized,
	accounts.CodeInvalidEmail:    http.StatusBadRequest,
	accounts.CodeEmailTaken:      http.StatusConflict,
	accounts.CodeNoEmail:         http.StatusNotFound,
}

// writeEnvelopeError answers err in Casdoor's envelope; the HTTP status
// agrees with it. A refused or missing access token also gets the RFC 6750
// challenge.
func (h *Handler) writeEnvelopeError(w http.ResponseWriter, err error) error {
	f := Classify(h.Logger, err, "account API")
	switch f.Kind {
	case FailGone:
		w.WriteHeader(f.Status)
		return nil
	case FailHTTP:
		if f.challenge != "" {
			w.Header().Set("WWW-Authenticate", f.challenge)
		}
		return WriteJSON(w, f.Status, envelope{Status: "error", Msg: f.Desc, Data: f.Code})
	case FailThrottled, FailUnavailable:
		SetRetryAfter(w, f)
		return WriteJSON(w, f.Status, envelope{Status: "error", Msg: f.Desc})
	case FailToken, FailAuth:
		setBearerChallenge(w, f.Code, f.Desc)
		return WriteJSON(w, f.Status, envelope{Status: "error", Msg: f.Desc, Data: f.Code})
	case FailDomain:
		return WriteJSON(w, AccountStatus(f.Code), envelope{Status: "error", Msg: f.Desc, Data: f.Code})
	}
	return WriteJSON(w, http.StatusInternalServerError, envelope{Status: "error", Msg: internalText})
}

// WriteBearerError answers a refused request per RFC 6750 (challenge and
// JSON body). A server fault (a store failure while checking the token) is
// a 500 from Caddy's error handling: not the client's fault, and never
// treated as anonymous.
func (h *Handler) WriteBearerError(w http.ResponseWriter, err error) error {
	f := Classify(h.Logger, err, "authenticating request")
	switch f.Kind {
	case FailGone:
		w.WriteHeader(f.Status)
		return nil
	case FailToken, FailAuth:
		return BearerError(w, f.Status, f.Code, f.Desc)
	case FailThrottled:
		SetRetryAfter(w, f)
		return BearerError(w, f.Status, "temporarily_unavailable", f.Desc)
	case FailUnavailable:
		// Not a credential problem: no challenge.
		SetRetryAfter(w, f)
		return WriteJSON(w, f.Status, oauthError{Error: f.Code, Description: f.Desc})
	case FailDomain, FailHTTP:
		return BearerError(w, http.StatusBadRequest, "invalid_request", f.Desc)
	}
	return caddyhttp.Error(http.StatusInternalServerError, f.Err)
}

// writeChallengeError answers err in Authgear's envelope (the challenge
// endpoint): a body that is too slow is 408, any other unreadable body
// 413, a refused purpose 400 ValidationFailed, a limit 429.
func (h *Handler) writeChallengeError(w http.ResponseWriter, err error) error {
	f := Classify(h.Logger, err, "challenge endpoint")
	switch f.Kind {
	case FailGone:
		w.WriteHeader(f.Status)
		return nil
	case FailHTTP:
		if f.Status == http.StatusRequestTimeout {
			return writeAuthgearError(w, f.Status, "RequestTimeout", "RequestTimeout", f.Desc)
		}
		return writeAuthgearError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "RequestEntityTooLarge", "The request body is too large.")
	case FailThrottled:
		SetRetryAfter(w, f)
		return writeAuthgearError(w, f.Status, "TooManyRequest", "RateLimited", f.Desc)
	case FailUnavailable:
		SetRetryAfter(w, f)
		return writeAuthgearError(w, f.Status, "ServiceUnavailable", "StorageUnavailable", f.Desc)
	case FailDomain, FailToken, FailAuth:
		return writeAuthgearError(w, http.StatusBadRequest, "Invalid", "ValidationFailed", f.Desc)
	}
	return writeAuthgearError(w, http.StatusInternalServerError, "InternalError", "UnexpectedError", internalText)
}

// BearerError answers with the RFC 6750 challenge and a JSON body; code ""
// is a bare challenge (no credential was offered).
func BearerError(w http.ResponseWriter, status int, code, desc string) error {
	setBearerChallenge(w, code, desc)
	body := oauthError{Error: code, Description: desc}
	if code == "" {
		body = oauthError{Error: "unauthorized", Description: "An access token is required."}
	}
	return WriteJSON(w, status, body)
}

func writeAuthgearError(w http.ResponseWriter, status int, name, reason, msg string) error {
	return WriteJSON(w, status, authgearEnvelope{Error: &authgearError{Name: name, Reason: reason, Message: msg, Code: status}})
}

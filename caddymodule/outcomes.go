package caddymodule

// One path for domain outcomes: every error a handler answers goes through
// classify, which sorts it once (a refusal the client can be told, a limit,
// a refused token, a missing credential, or a server fault) and counts the
// metrics that go with it; one small writer per protocol then turns the
// classification into that protocol's status, headers and body:
//
//   - writeOAuthError: RFC 6749 §5.2 JSON (token and revocation endpoints);
//   - writeEnvelopeError: Casdoor's envelope (/api/update-user, get-account, logout);
//   - writeChallengeError: Authgear's envelope (/oauth2/challenge);
//   - writeBearerError: RFC 6750 (UserInfo, proxied requests).
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

type failKind int

const (
	failInternal    failKind = iota // a server fault: logged, answered 500 without detail
	failDomain                      // an *accounts.Error the client can be shown
	failHTTP                        // an *httpError: a domain error with its own status
	failThrottled                   // an *accounts.ThrottledError: 429 with Retry-After
	failToken                       // a *tokens.InvalidError: the access token is refused
	failAuth                        // an *authError: no usable credential was offered
	failUnavailable                 // model.ErrUnavailable: 503 with Retry-After, never anonymous
	failGone                        // the client went away (its request's context ended): 499, no body
)

// statusClientClosed is what the access log shows for a request whose
// client went away before the answer, as reverse_proxy records it.
const statusClientClosed = 499

// failure is a classified error.
type failure struct {
	kind      failKind
	status    int    // failHTTP and failAuth: the status to answer
	challenge string // failHTTP: a WWW-Authenticate value, if any
	code      string // the OAuth / RFC 6750 error code ("" for a bare challenge)
	desc      string // a sentence the client may see
	retry     int64  // failThrottled: Retry-After seconds
	err       error  // failInternal: the fault, for the caller that passes it on
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

// classify sorts err and counts its metrics; a server fault is logged with
// where as the message.
func (g *GuestAuth) classify(err error, where string) failure {
	var he *httpError
	var te *accounts.ThrottledError
	var inv *tokens.InvalidError
	var af *authError
	var ae *accounts.Error
	switch {
	case errors.As(err, &he):
		return failure{kind: failHTTP, status: he.status, challenge: he.challenge, code: he.err.Code, desc: he.err.Description}
	case errors.As(err, &te):
		metrics.RateLimited(te.Limit)
		return failure{kind: failThrottled, status: http.StatusTooManyRequests, desc: te.Error(), retry: te.RetrySeconds()}
	case errors.As(err, &inv):
		g.logger.Debug("access token refused", zap.String("reason", inv.Reason))
		metrics.TokenRejected(inv.Reason)
		return failure{kind: failToken, status: http.StatusUnauthorized, code: "invalid_token", desc: tokenErrorText[inv.Reason]}
	case errors.As(err, &af):
		return failure{kind: failAuth, status: af.status, code: af.code, desc: af.desc}
	case errors.As(err, &ae):
		return failure{kind: failDomain, code: ae.Code, desc: ae.Description}
	case errors.Is(err, context.Canceled):
		// Not a server fault: nobody is left to answer.
		g.logger.Debug("client went away", zap.String("during", where))
		return failure{kind: failGone, status: statusClientClosed}
	case errors.Is(err, model.ErrUnavailable):
		// The driver's message is logged, never sent.
		g.logger.Warn("storage unavailable", zap.String("during", where), zap.Error(err))
		return failure{kind: failUnavailable, status: http.StatusServiceUnavailable, code: "temporarily_unavailable", desc: unavailableText, retry: unavailableRetry}
	}
	g.logger.Error(where, zap.Error(err))
	return failure{kind: failInternal, status: http.StatusInternalServerError, err: err}
}

const internalText = "The request could not be completed."

func setRetryAfter(w http.ResponseWriter, f failure) {
	w.Header().Set("Retry-After", strconv.FormatInt(f.retry, 10))
}

// writeOAuthError answers err as RFC 6749 §5.2 JSON; any error that is not
// a domain error is a server fault, logged and answered 500 without detail.
func (g *GuestAuth) writeOAuthError(w http.ResponseWriter, err error) error {
	f := g.classify(err, "token endpoint")
	switch f.kind {
	case failGone:
		w.WriteHeader(f.status)
		return nil
	case failHTTP:
		if f.challenge != "" {
			w.Header().Set("WWW-Authenticate", f.challenge)
		}
		return writeJSON(w, f.status, oauthError{Error: f.code, Description: f.desc})
	case failThrottled, failUnavailable:
		setRetryAfter(w, f)
		return writeJSON(w, f.status, oauthError{Error: "temporarily_unavailable", Description: f.desc})
	case failDomain, failToken, failAuth:
		status, ok := oauthStatus[f.code]
		if !ok {
			status = http.StatusBadRequest
		}
		return writeJSON(w, status, oauthError{Error: f.code, Description: f.desc})
	}
	return writeJSON(w, http.StatusInternalServerError, oauthError{Error: "server_error", Description: internalText})
}

// oauthStatus maps RFC 6749 §5.2 error codes to HTTP statuses.
var oauthStatus = map[string]int{
	accounts.CodeInvalidRequest:       http.StatusBadRequest,
	accounts.CodeInvalidClient:        http.StatusUnauthorized,
	accounts.CodeInvalidGrant:         http.StatusBadRequest,
	accounts.CodeUnauthorizedClient:   http.StatusBadRequest,
	accounts.CodeUnsupportedGrantType: http.StatusBadRequest,
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
}

// writeEnvelopeError answers err in Casdoor's envelope; the HTTP status
// agrees with it. A refused or missing access token also gets the RFC 6750
// challenge.
func (g *GuestAuth) writeEnvelopeError(w http.ResponseWriter, err error) error {
	f := g.classify(err, "account API")
	switch f.kind {
	case failGone:
		w.WriteHeader(f.status)
		return nil
	case failHTTP:
		return writeJSON(w, f.status, envelope{Status: "error", Msg: f.desc, Data: f.code})
	case failThrottled, failUnavailable:
		setRetryAfter(w, f)
		return writeJSON(w, f.status, envelope{Status: "error", Msg: f.desc})
	case failToken, failAuth:
		setBearerChallenge(w, f.code, f.desc)
		return writeJSON(w, f.status, envelope{Status: "error", Msg: f.desc, Data: f.code})
	case failDomain:
		status, ok := profileStatus[f.code]
		if !ok {
			status = http.StatusBadRequest
		}
		return writeJSON(w, status, envelope{Status: "error", Msg: f.desc, Data: f.code})
	}
	return writeJSON(w, http.StatusInternalServerError, envelope{Status: "error", Msg: internalText})
}

// writeBearerError answers a refused request per RFC 6750 (challenge and
// JSON body). A server fault (a store failure while checking the token) is
// a 500 from Caddy's error handling: not the client's fault, and never
// treated as anonymous.
func (g *GuestAuth) writeBearerError(w http.ResponseWriter, err error) error {
	f := g.classify(err, "authenticating request")
	switch f.kind {
	case failGone:
		w.WriteHeader(f.status)
		return nil
	case failToken, failAuth:
		return bearerError(w, f.status, f.code, f.desc)
	case failThrottled:
		setRetryAfter(w, f)
		return bearerError(w, f.status, "temporarily_unavailable", f.desc)
	case failUnavailable:
		// Not a credential problem: no challenge.
		setRetryAfter(w, f)
		return writeJSON(w, f.status, oauthError{Error: f.code, Description: f.desc})
	case failDomain, failHTTP:
		return bearerError(w, http.StatusBadRequest, "invalid_request", f.desc)
	}
	return caddyhttp.Error(http.StatusInternalServerError, f.err)
}

// writeChallengeError answers err in Authgear's envelope (the challenge
// endpoint): a body that is too slow is 408, any other unreadable body
// 413, a refused purpose 400 ValidationFailed, a limit 429.
func (g *GuestAuth) writeChallengeError(w http.ResponseWriter, err error) error {
	f := g.classify(err, "challenge endpoint")
	switch f.kind {
	case failGone:
		w.WriteHeader(f.status)
		return nil
	case failHTTP:
		if f.status == http.StatusRequestTimeout {
			return writeAuthgearError(w, f.status, "RequestTimeout", "RequestTimeout", f.desc)
		}
		return writeAuthgearError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "RequestEntityTooLarge", "The request body is too large.")
	case failThrottled:
		setRetryAfter(w, f)
		return writeAuthgearError(w, f.status, "TooManyRequest", "RateLimited", f.desc)
	case failUnavailable:
		setRetryAfter(w, f)
		return writeAuthgearError(w, f.status, "ServiceUnavailable", "StorageUnavailable", f.desc)
	case failDomain, failToken, failAuth:
		return writeAuthgearError(w, http.StatusBadRequest, "Invalid", "ValidationFailed", f.desc)
	}
	return writeAuthgearError(w, http.StatusInternalServerError, "InternalError", "UnexpectedError", internalText)
}

// bearerError answers with the RFC 6750 challenge and a JSON body.
func bearerError(w http.ResponseWriter, status int, code, desc string) error {
	setBearerChallenge(w, code, desc)
	body := oauthError{Error: code, Description: desc}
	if code == "" {
		body = oauthError{Error: "unauthorized", Description: "An access token is required."}
	}
	return writeJSON(w, status, body)
}

func writeAuthgearError(w http.ResponseWriter, status int, name, reason, msg string) error {
	return writeJSON(w, status, authgearEnvelope{Error: &authgearError{Name: name, Reason: reason, Message: msg, Code: status}})
}

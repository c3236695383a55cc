package protocol

// The authorization endpoint (RFC 6749 §4.1, OpenID Connect Core §3.1),
// with the built-in pages as its user interface. Every client is
// first-party, so there is no consent screen: a visitor with a browser
// session (a guest's included) gets a code at once; one without is sent to
// the sign-in page (which offers sign-up and continuing as a guest) and
// comes back here afterwards.
//
// The way back is a flow state: the validated request is stored (any node
// can finish it) and the pages return to PathAuthorize?resume=<handle>.
// When the request demands a new sign-in (prompt=login, or a max_age the
// session exceeds), the stored record's creation time is the bar: only a
// session authenticated after it passes, so reloading the return URL does
// not skip the sign-in.
//
// Until the client and redirect URI are known to be valid, errors are an
// HTML page, never a redirect (RFC 6749 §4.1.2.1); after that they go back
// to the redirect URI with error, error_description, state and iss (RFC
// 9207), as successes do.

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Browser is what the authorization and end-session endpoints need of the
// browser side; internal/pages implements it.
type Browser interface {
	// Identity resolves the request's session cookie (nil without a
	// session); only a store failure is an error.
	Identity(w http.ResponseWriter, r *http.Request) (*accounts.Identity, error)
	// PageURL is the URL of a page (signin, signup, signout) that returns
	// to returnTo (a path of this site) when done; loginHint, when it can
	// be a username, is filled in.
	PageURL(page, returnTo, loginHint string) string
	// EndSession ends the browser session id and clears its cookie.
	EndSession(w http.ResponseWriter, r *http.Request, id *accounts.Identity) error
	// StartSession gives the browser a new session of u, replacing prev
	// (the browser's session; nil for none), and sets its cookie.
	StartSession(w http.ResponseWriter, r *http.Request, prev *accounts.Identity, u *model.User) (*accounts.Identity, error)
	// Error answers an HTML error page; Fault one for a failed store
	// operation (503 with Retry-After when the store is out of reach);
	// SignedOut the page telling the visitor they are signed out.
	Error(w http.ResponseWriter, r *http.Request, status int, msg string) error
	Fault(w http.ResponseWriter, r *http.Request, err error, where string) error
	SignedOut(w http.ResponseWriter, r *http.Request) error
	// ProviderStartURL is the absolute URL that starts a sign-in with the
	// provider name for the flow state handoff (ProviderHandoff); ok is
	// false when there is no such provider.
	ProviderStartURL(r *http.Request, name, handoff string) (u string, ok bool)
}

// Scopes the authorization endpoint grants; others are ignored (Casdoor's
// SDKs ask for "read").
var Scopes = []string{accounts.Scope, "profile", "email", "offline_access"}

// authorizeTTL is how long a request waits for the visitor to sign in.
const authorizeTTL = 15 * time.Minute

// Bounds on what a request may store.
const (
	maxStateLen = 4096
	maxNonceLen = 512
	maxHintLen  = 512
)

// authzRequest is a validated authorization request, as stored while the
// visitor signs in.
type authzRequest struct {
	ClientID      string `json:"client_id"`
	RedirectURI   string `json:"redirect_uri"`
	RedirectGiven bool   `json:"redirect_given,omitempty"`
	State         string `json:"state,omitempty"`
	Nonce         string `json:"nonce,omitempty"`
	Challenge     string `json:"code_challenge,omitempty"`
	Scope         string `json:"scope,omitempty"`
	LoginHint     string `json:"login_hint,omitempty"`
	// Create: prompt=create, the visitor is to sign up. Fresh: the
	// sign-in must be newer than the request (prompt=login). MaxAge: the
	// sign-in must be at most this many seconds old (-1: no limit).
	Create bool  `json:"create,omitempty"`
	Fresh  bool  `json:"fresh,omitempty"`
	MaxAge int64 `json:"max_age"`
	// Guest is the guest session the visitor had when the request was
	// made: upgrading it on the sign-up page counts as signing in.
	Guest string `json:"guest_session,omitempty"`
	// None: prompt=none, never stored (it never waits for a sign-in).
	None bool `json:"-"`
}

// authzError is an error to send back to the redirect URI.
type authzError struct{ code, desc string }

func (e *authzError) Error() string { return e.code + ": " + e.desc }

func authzErr(code, format string, args ...any) *authzError {
	return &authzError{code: code, desc: fmt.Sprintf(format, args...)}
}

// Authorize is the authorization endpoint, GET or POST (a form).
func (h *Handler) Authorize(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if h.Browser == nil {
		return plainError(w, http.StatusNotFound, "This site has no sign-in pages (guest_auth's browser option), so it has no authorization endpoint.")
	}
	params, bad := browserParams(w, r)
	if bad != "" {
		return h.Browser.Error(w, r, http.StatusBadRequest, bad)
	}
	if handle, ok := resumeHandle(params); ok {
		return h.resumeAuthorize(w, r, handle)
	}
	client, redirect, given, msg := h.authorizeTarget(params)
	if msg != "" {
		return h.Browser.Error(w, r, http.StatusBadRequest, msg)
	}
	req := &authzRequest{ClientID: client.ID, RedirectURI: redirect, RedirectGiven: given, State: first(params, "state")}
	if len(req.State) > maxStateLen {
		// Not echoed: a state that long is refused, and is no state.
		req.State = ""
		return h.authzRedirect(w, r, req, authzErr(accounts.CodeInvalidRequest, "The state is longer than %d bytes.", maxStateLen))
	}
	if aerr := parseAuthorize(params, client, req); aerr != nil {
		return h.authzRedirect(w, r, req, aerr)
	}
	return h.decide(w, r, req, "", time.Time{})
}

// resumeHandle is the handle of a request the pages return to: a query
// of resume alone.
func resumeHandle(params url.Values) (string, bool) {
	if len(params) != 1 || len(params["resume"]) != 1 {
		return "", false
	}
	return params["resume"][0], true
}

// resumeAuthorize goes on with a stored request after the pages.
func (h *Handler) resumeAuthorize(w http.ResponseWriter, r *http.Request, handle string) error {
	var req authzRequest
	created, err := h.Accounts.FlowState(r.Context(), accounts.FlowAuthorize, handle, &req)
	switch {
	case errors.Is(err, model.ErrNotFound), errors.Is(err, model.ErrSpent):
		return h.Browser.Error(w, r, http.StatusBadRequest, "This sign-in request has expired or was already completed. Go back to the app and sign in again.")
	case err != nil:
		return h.Browser.Fault(w, r, err, "resuming an authorization request")
	}
	// The configuration may have changed while the visitor signed in.
	c := h.Clients[req.ClientID]
	if c == nil {
		return h.Browser.Error(w, r, http.StatusBadRequest, "The app that sent you here is no longer known to this site.")
	}
	if _, ok := c.redirectURI(req.RedirectURI, true); !ok {
		return h.Browser.Error(w, r, http.StatusBadRequest, "The address the app asked to return to is no longer registered for it.")
	}
	return h.decide(w, r, &req, handle, created)
}

// authorizeTarget finds the client and redirect URI of a request; msg,
// when not empty, is the error page's text.
func (h *Handler) authorizeTarget(params url.Values) (c *Client, redirect string, given bool, msg string) {
	ids, uris := params["client_id"], params["redirect_uri"]
	switch {
	case len(ids) == 0 || ids[0] == "":
		return nil, "", false, "The request does not name the app it comes from (client_id)."
	case len(ids) > 1:
		return nil, "", false, "The request names client_id more than once."
	case len(uris) > 1:
		return nil, "", false, "The request names redirect_uri more than once."
	}
	if c = h.Clients[ids[0]]; c == nil {
		return nil, "", false, "The app that sent you here (client_id) is not known to this site."
	}
	given = len(uris) == 1
	uri := ""
	if given {
		uri = uris[0]
	}
	redirect, ok := c.redirectURI(uri, given)
	switch {
	case !ok && !given:
		return nil, "", false, "The request does not say where to return (redirect_uri), and the app has no single registered address."
	case !ok:
		return nil, "", false, "The address the app asked to return to (redirect_uri) is not registered for it."
	}
	return c, redirect, given, ""
}

// parseAuthorize checks the rest of a request whose client and redirect
// URI are valid, filling req.
func parseAuthorize(params url.Values, c *Client, req *authzRequest) *authzError {
	for k, vs := range params {
		if len(vs) > 1 {
			return authzErr(accounts.CodeInvalidRequest, "The parameter %s is repeated.", k)
		}
	}
	switch rt := first(params, "response_type"); {
	case rt == "":
		return authzErr(accounts.CodeInvalidRequest, "The response_type parameter is missing.")
	case rt != "code":
		return authzErr("unsupported_response_type", "Only response_type=code is supported.")
	}
	if m := first(params, "response_mode"); m != "" && m != "query" {
		return authzErr(accounts.CodeInvalidRequest, "Only response_mode=query is supported.")
	}
	if _, ok := params["request"]; ok {
		return authzErr("request_not_supported", "Request objects are not supported.")
	}
	if _, ok := params["request_uri"]; ok {
		return authzErr("request_uri_not_supported", "request_uri is not supported.")
	}
	challenge, method := first(params, "code_challenge"), first(params, "code_challenge_method")
	switch {
	case challenge == "" && method != "":
		return authzErr(accounts.CodeInvalidRequest, "code_challenge_method needs a code_challenge.")
	case challenge == "" && c.Public:
		return authzErr(accounts.CodeInvalidRequest, "This client must use PKCE: send a code_challenge with code_challenge_method=S256.")
	case challenge != "" && method != "S256":
		// An absent method means plain (RFC 7636 §4.3), refused as well:
		// a plain challenge is the verifier itself.
		return authzErr(accounts.CodeInvalidRequest, "code_challenge_method must be S256 (plain is not accepted).")
	case challenge != "" && !accounts.ValidChallenge(challenge):
		return authzErr(accounts.CodeInvalidRequest, "The code_challenge is not an S256 challenge (43 base64url characters).")
	}
	req.Challenge = challenge
	if req.Nonce = first(params, "nonce"); len(req.Nonce) > maxNonceLen {
		return authzErr(accounts.CodeInvalidRequest, "The nonce is longer than %d bytes.", maxNonceLen)
	}
	if req.LoginHint = first(params, "login_hint"); len(req.LoginHint) > maxHintLen {
		return authzErr(accounts.CodeInvalidRequest, "The login_hint is longer than %d bytes.", maxHintLen)
	}
	req.Scope = grantScope(first(params, "scope"))
	req.MaxAge = -1
	if v, ok := params["max_age"]; ok {
		n, err := strconv.ParseInt(v[0], 10, 64)
		if err != nil || n < 0 {
			return authzErr(accounts.CodeInvalidRequest, "max_age must be a number of seconds.")
		}
		req.MaxAge = n
	}
	return parsePrompt(first(params, "prompt"), req)
}

// parsePrompt reads prompt (OpenID Connect Core §3.1.2.1, and create from
// Initiating User Registration 1.0). consent needs nothing here (every
// client is first-party, there is no consent screen); select_account asks
// for a sign-in, as login does.
func parsePrompt(prompt string, req *authzRequest) *authzError {
	values := strings.Fields(prompt)
	for _, v := range values {
		switch v {
		case "none":
			if len(values) > 1 {
				return authzErr(accounts.CodeInvalidRequest, "prompt=none cannot be combined with other values.")
			}
			req.None = true
		case "login", "select_account":
			req.Fresh = true
		case "create":
			req.Create = true
		case "consent":
		default:
			return authzErr(accounts.CodeInvalidRequest, "prompt %q is not supported.", v)
		}
	}
	if req.Create && req.Fresh {
		return authzErr(accounts.CodeInvalidRequest, "prompt=create cannot be combined with login.")
	}
	return nil
}

// grantScope is the scope granted for a requested one: the known scopes it
// names, in its order; the others are ignored. Without openid the request
// is plain OAuth 2.0 (OpenID Connect Core §3.1.2.1 leaves its behaviour
// open): it is served all the same, with an ID token, as Casdoor does; a
// request naming no known scope (Casdoor's scope=read) is granted openid
// (the scope of every token set, which always has an ID token).
func grantScope(requested string) string {
	var out []string
	for _, s := range strings.Fields(requested) {
		for _, known := range Scopes {
			if s == known && !containsString(out, s) {
				out = append(out, s)
			}
		}
	}
	return strings.Join(out, " ")
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// satisfied reports whether the browser session id may have a code for
// req, stored at created (zero for a request not stored).
func (req *authzRequest) satisfied(id *accounts.Identity, created, now time.Time) bool {
	if id == nil {
		return false
	}
	if req.Create && id.User.IsAnonymous() {
		return false
	}
	if req.MaxAge >= 0 && now.Sub(id.Session.AuthTime) > time.Duration(req.MaxAge)*time.Second {
		// Past max_age, only a sign-in during this request will do.
		if created.IsZero() || !signedInSince(req, id, created) {
			return false
		}
	}
	if req.Fresh {
		return !created.IsZero() && signedInSince(req, id, created)
	}
	return true
}

// signedInSince reports whether id's sign-in happened after created: a
// newer session, or the guest session the request saw upgraded since.
func signedInSince(req *authzRequest, id *accounts.Identity, created time.Time) bool {
	return id.Session.AuthTime.After(created) || (req.Guest != "" && req.Guest == id.Session.ID && !id.User.IsAnonymous())
}

// decide issues the code, sends the visitor to the pages, or refuses; a
// request resumed from the store has its handle and creation time.
func (h *Handler) decide(w http.ResponseWriter, r *http.Request, req *authzRequest, handle string, created time.Time) error {
	id, err := h.Browser.Identity(w, r)
	if err != nil {
		return h.authzRedirect(w, r, req, h.authzFault(err, "reading the browser session"))
	}
	if handle == "" && !req.None { // prompt=none cannot show the sign-up page
		var answered bool
		if id, answered, err = h.promote(w, r, req, id); answered {
			return err
		}
	}
	if req.satisfied(id, created, h.Accounts.Now()) {
		return h.issueCode(w, r, req, id, handle)
	}
	if req.None {
		return h.authzRedirect(w, r, req, authzErr("login_required", "The visitor is not signed in."))
	}
	if handle == "" {
		if id != nil && id.User.IsAnonymous() {
			req.Guest = id.Session.ID
		}
		ctx := accounts.WithClientIP(r.Context(), h.ClientIP(r))
		if handle, err = h.Accounts.PutFlowState(ctx, accounts.FlowAuthorize, authorizeTTL, req, h.LimitKey(r)); err != nil {
			return h.authzRedirect(w, r, req, h.authzFault(err, "storing an authorization request"))
		}
	}
	page := "signin"
	if req.Create {
		page = "signup"
	}
	back := r.URL.Path + "?" + url.Values{"resume": {handle}}.Encode()
	http.Redirect(w, r, h.Browser.PageURL(page, back, req.LoginHint), http.StatusSeeOther) //nolint:gosec // G710: PageURL's target is the pages' prefix, a path of this site; request values are only in its query
	return nil
}

// promote serves Authgear's anonymous login_hint (Promotion) on a new
// request: the promotion code is taken, once; the browser gets a session
// of its guest, replacing the browser's own (except another guest's, which
// keeps its session but loses the cookie here: two guests are not
// merged); and the request asks for the sign-up page, where that guest
// takes a name and password, keeping its id, and so signs in. The code
// then issued is the promoted user's. A bad code goes back to the client
// as invalid_request. answered is true when the answer was written (err
// is then its result); otherwise id is the browser's identity from now on.
func (h *Handler) promote(w http.ResponseWriter, r *http.Request, req *authzRequest, id *accounts.Identity) (_ *accounts.Identity, answered bool, err error) {
	guest, promote, err := h.Promotion(r.Context(), req.LoginHint, req.ClientID)
	if !promote {
		return id, false, nil
	}
	if err != nil {
		var ae *accounts.Error
		if errors.As(err, &ae) {
			return nil, true, h.authzRedirect(w, r, req, authzErr(accounts.CodeInvalidRequest, "%s", ae.Description))
		}
		return nil, true, h.authzRedirect(w, r, req, h.authzFault(err, "taking a promotion code"))
	}
	prev := id
	if prev != nil && prev.User.ID != guest.ID && prev.User.IsAnonymous() {
		prev = nil
	}
	if id, err = h.Browser.StartSession(w, r, prev, guest); err != nil {
		return nil, true, h.authzRedirect(w, r, req, h.authzFault(err, "starting the promoted guest's browser session"))
	}
	req.Create = true
	return id, false, nil
}

// issueCode sends the visitor back to the client with a code.
func (h *Handler) issueCode(w http.ResponseWriter, r *http.Request, req *authzRequest, id *accounts.Identity, handle string) error {
	ctx := r.Context()
	if handle != "" {
		// The stored request is done: a second visit of its URL does not
		// give a second code.
		var again authzRequest
		_, err := h.Accounts.TakeFlowState(ctx, accounts.FlowAuthorize, handle, &again)
		switch {
		case errors.Is(err, model.ErrNotFound), errors.Is(err, model.ErrSpent):
			return h.Browser.Error(w, r, http.StatusBadRequest, "This sign-in request has expired or was already completed. Go back to the app and sign in again.")
		case err != nil:
			return h.authzRedirect(w, r, req, h.authzFault(err, "completing an authorization request"))
		}
	}
	code, err := h.Accounts.IssueCode(ctx, id, accounts.CodeRequest{
		ClientID: req.ClientID, RedirectURI: req.RedirectURI, RedirectGiven: req.RedirectGiven,
		Challenge: req.Challenge, Nonce: req.Nonce, Scope: req.Scope,
	})
	if err != nil {
		return h.authzRedirect(w, r, req, h.authzFault(err, "issuing an authorization code"))
	}
	return h.sendBack(w, r, req, url.Values{"code": {code}})
}

// authzFault turns a failure after the redirect URI is known into the
// error sent there: a store out of reach or a limit is
// temporarily_unavailable, anything else server_error (logged).
func (h *Handler) authzFault(err error, where string) *authzError {
	switch f := Classify(h.Logger, err, where); f.Kind {
	case FailUnavailable, FailThrottled:
		return authzErr("temporarily_unavailable", "%s", f.Desc)
	case FailGone:
		return nil
	}
	return authzErr("server_error", "The request could not be completed.")
}

// authzRedirect sends aerr back to the redirect URI (RFC 6749 §4.1.2.1).
// A nil aerr is a client gone away: nothing is answered.
func (h *Handler) authzRedirect(w http.ResponseWriter, r *http.Request, req *authzRequest, aerr *authzError) error {
	if aerr == nil {
		w.WriteHeader(statusClientClosed)
		return nil
	}
	h.Logger.Debug("authorization request refused", zap.String("client_id", req.ClientID), zap.String("error", aerr.code))
	return h.sendBack(w, r, req, url.Values{"error": {aerr.code}, "error_description": {aerr.desc}})
}

// sendBack redirects to the request's redirect URI with params, its state
// and iss (RFC 9207) added to the URI's own query, which is kept as
// registered.
func (h *Handler) sendBack(w http.ResponseWriter, r *http.Request, req *authzRequest, params url.Values) error {
	if req.State != "" {
		params.Set("state", req.State)
	}
	params.Set("iss", h.Issuer(r))
	sep := "?"
	if strings.Contains(req.RedirectURI, "?") {
		sep = "&"
	}
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Location", req.RedirectURI+sep+params.Encode())
	w.WriteHeader(status)
	return nil
}

// maxBrowserForm bounds the form of a POSTed authorization or logout
// request.
const maxBrowserForm = 16 << 10

// browserParams reads the parameters of a browser endpoint: the query of
// a GET, the form of a POST (application/x-www-form-urlencoded). bad, when
// not empty, is why they could not be read.
func browserParams(w http.ResponseWriter, r *http.Request) (params url.Values, bad string) {
	if r.Method != http.MethodPost {
		v, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, "The request's parameters are malformed."
		}
		return v, ""
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBrowserForm)
	if err := r.ParseForm(); err != nil {
		return nil, "The request's form could not be read."
	}
	return r.PostForm, ""
}

func first(v url.Values, k string) string {
	if vs := v[k]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// plainError answers a short text/plain error.
func plainError(w http.ResponseWriter, status int, msg string) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, err := w.Write([]byte(msg + "\n"))
	return err
}

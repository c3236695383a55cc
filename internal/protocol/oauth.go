package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/ctcmp"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"go.uber.org/zap"
)

// maxBodyBytes bounds every request body the module reads.
const maxBodyBytes = 64 << 10

// GuestCode is the Casdoor / Hanzo IAM authorization code that creates a guest.
const GuestCode = "guest-user"

type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// WriteJSON answers v as an uncacheable JSON document.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

// httpError is an OAuth error answered with a given status and, for a
// failed Basic client authentication, a challenge (RFC 6749 §5.2).
type httpError struct {
	status    int
	challenge string
	err       *accounts.Error
}

func (e *httpError) Error() string { return e.err.Error() }

func badRequest(format string, args ...any) error {
	return &accounts.Error{Code: accounts.CodeInvalidRequest, Description: fmt.Sprintf(format, args...)}
}

// readBody reads at most limit bytes of body. A body that is too large is
// answered 413; one that does not arrive before the read deadline the
// endpoints set (api_read_timeout) is answered 408, and the connection is
// closed, since the rest of that body will never be read.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		return body, nil
	}
	var tooBig *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &tooBig):
		return nil, &httpError{status: http.StatusRequestEntityTooLarge, err: &accounts.Error{Code: accounts.CodeInvalidRequest, Description: fmt.Sprintf("The request body exceeds %d bytes.", limit)}}
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		w.Header().Set("Connection", "close")
		return nil, &httpError{status: http.StatusRequestTimeout, err: &accounts.Error{Code: accounts.CodeInvalidRequest, Description: "The request body did not arrive in time."}}
	}
	return nil, badRequest("The request body could not be read.")
}

// readParams reads a POST body as JSON or application/x-www-form-urlencoded
// into single-valued string parameters.
func readParams(w http.ResponseWriter, r *http.Request) (map[string]string, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, badRequest("The Content-Type must be application/json or application/x-www-form-urlencoded.")
	}
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return nil, err
	}
	params := map[string]string{}
	switch ct {
	case "application/json":
		if params, err = flatJSONObject(body); err != nil {
			return nil, err
		}
	case "application/x-www-form-urlencoded":
		values, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, badRequest("The form body is malformed.")
		}
		for k, vs := range values {
			if len(vs) > 1 {
				return nil, badRequest("The parameter %q is repeated.", k)
			}
			params[k] = vs[0]
		}
	default:
		return nil, badRequest("The Content-Type must be application/json or application/x-www-form-urlencoded.")
	}
	return params, nil
}

// flatJSONObject reads body as one JSON object whose values are strings
// (null counts as absent).
func flatJSONObject(body []byte) (map[string]string, error) {
	params := map[string]string{}
	err := walkFlatJSON(body, func(k string, v *string) {
		if v != nil {
			params[k] = *v
		}
	})
	if err != nil {
		return nil, err
	}
	return params, nil
}

// walkFlatJSON calls field for each member of the JSON object body, whose
// values must be strings or null (v nil). It walks the tokens rather than
// decoding into a map, because encoding/json keeps the last of repeated keys
// silently: a body naming a member twice is refused, as a repeated form field
// is, so no two readers of one body can disagree on its value.
func walkFlatJSON(body []byte, field func(k string, v *string)) error {
	notObject := badRequest("The request body is not a JSON object.")
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return notObject
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		k, ok := tok.(string)
		if err != nil || !ok {
			return notObject
		}
		if seen[k] {
			return badRequest("The parameter %q is repeated.", k)
		}
		seen[k] = true
		switch v, err := dec.Token(); {
		case err != nil:
			return notObject
		case v == nil:
			field(k, nil)
		default:
			s, ok := v.(string)
			if !ok {
				return badRequest("The parameter %q must be a string.", k)
			}
			field(k, &s)
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return notObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("The request body has data after the JSON object.")
	}
	return nil
}

// authenticateClient checks client_secret_basic or client_secret_post.
// Secrets are compared in constant time as fixed-size digests (so neither
// the secret nor its length shows in the timing), and an unknown client costs
// the same comparison, so timing does not tell which client ids exist.
// Casdoor's SDKs send Basic and client_secret together: accepted when the
// two secrets are the same, invalid_client when they differ.
func (h *Handler) authenticateClient(r *http.Request, params map[string]string) (*Client, error) {
	if rawID, rawSecret, basic := r.BasicAuth(); basic {
		c, secret, err := h.basicClient(rawID, rawSecret)
		if err != nil {
			return nil, err
		}
		if body, ok := params["client_secret"]; ok && !ctcmp.Equal([]byte(body), []byte(secret)) {
			return nil, clientError(true, "The client_secret in the body differs from the Basic credentials.")
		}
		if bodyID, ok := params["client_id"]; ok && bodyID != c.ID {
			return nil, badRequest("The client_id in the body does not match the Basic credentials.")
		}
		return c, nil
	}
	id, secret := params["client_id"], params["client_secret"]
	if id == "" {
		return nil, badRequest("The client_id parameter is missing.")
	}
	if c := h.matchClient(id, secret); c != nil {
		return c, nil
	}
	return nil, clientError(false, "Client authentication failed.")
}

// dummySecret is compared against for an unknown client_id.
var dummySecret = ctcmp.Sum([]byte("guest-auth-no-such-client-000000"))

func clientError(basic bool, desc string) error {
	e := &httpError{status: http.StatusUnauthorized, err: &accounts.Error{Code: accounts.CodeInvalidClient, Description: desc}}
	if basic {
		e.challenge = `Basic realm="` + realm + `"`
	}
	return e
}

// Token is the token endpoint (both the Hanzo IAM and Casdoor paths), POST.
func (h *Handler) Token(w http.ResponseWriter, r *http.Request) error {
	// Outcomes the grant causes (signin.throttled, refresh.reuse_detected)
	// report the client's address.
	r = r.WithContext(accounts.WithClientIP(r.Context(), h.ClientIP(r)))
	issued, err := h.tokenGrant(w, r)
	if err != nil {
		return h.writeOAuthError(w, err)
	}
	return WriteJSON(w, http.StatusOK, issued.Tokens)
}

func (h *Handler) tokenGrant(w http.ResponseWriter, r *http.Request) (*accounts.Issued, error) {
	params, err := readParams(w, r)
	if err != nil {
		return nil, err
	}
	grant := params["grant_type"]
	if grant == "" {
		return nil, badRequest("The grant_type parameter is missing.")
	}
	client, err := h.authenticateClient(r, params)
	if err != nil {
		return nil, err
	}
	switch grant {
	case "authorization_code":
		code := params["code"]
		if code == "" {
			return nil, badRequest("The code parameter is missing.")
		}
		if code != GuestCode {
			return h.redeemCode(r, client, params)
		}
		if err := client.allowGuests(GuestsCode); err != nil {
			return nil, err
		}
		issued, err := h.Accounts.CreateGuest(r.Context(), h.Issuer(r), client.ID, h.LimitKey(r))
		if err != nil {
			return nil, err
		}
		return issued, nil
	case accounts.GrantAnonymousRequest:
		return h.anonymousRequestGrant(r, client, params)
	case "password":
		username, password := params["username"], params["password"]
		if username == "" || password == "" {
			return nil, badRequest("The username and password parameters are required.")
		}
		issued, err := h.Accounts.SignIn(r.Context(), accounts.SignInRequest{
			Issuer: h.Issuer(r), ClientID: client.ID, Username: username, Password: password,
			ClientIP: h.LimitKey(r), DeviceToken: params["device_token"],
		})
		var ae *accounts.Error
		if errors.As(err, &ae) && ae.Code == accounts.CodeInvalidGrant {
			metrics.SignInFailed()
		}
		return issued, err
	case "refresh_token":
		token := params["refresh_token"]
		if token == "" {
			return nil, badRequest("The refresh_token parameter is missing.")
		}
		return h.Accounts.Refresh(r.Context(), h.Issuer(r), client.ID, token)
	}
	return nil, &accounts.Error{Code: accounts.CodeUnsupportedGrantType, Description: fmt.Sprintf("The grant_type %q is not supported.", grant)}
}

// writeJSONPublic writes a cacheable public JSON document.
func writeJSONPublic(w http.ResponseWriter, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, err = w.Write(body)
	return err
}

// SetReadDeadline bounds the time left to read r's body (api_read_timeout),
// so slow clients cannot hold connections open. Protocols without
// per-request deadlines (HTTP/3) keep the server's own timeouts.
func SetReadDeadline(w http.ResponseWriter, d time.Duration, log *zap.Logger) {
	err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
	if err != nil && !errors.Is(err, http.ErrNotSupported) {
		log.Debug("setting the read deadline", zap.Error(err))
	}
}

// redeemCode redeems an authorization code of the authorization endpoint.
// A confidential client has proved its secret, so it may leave out
// redirect_uri (Casdoor's server SDKs do); unknown parameters, such as
// Casdoor's scope=read, are ignored.
func (h *Handler) redeemCode(r *http.Request, client *Client, params map[string]string) (*accounts.Issued, error) {
	opt := func(k string) *string {
		if v, ok := params[k]; ok {
			return &v
		}
		return nil
	}
	issued, err := h.Accounts.RedeemCode(r.Context(), accounts.Redemption{
		Issuer: h.Issuer(r), ClientID: client.ID, Authenticated: !client.Public,
		Code: params["code"], RedirectURI: opt("redirect_uri"), Verifier: opt("code_verifier"),
	})
	if errors.Is(err, accounts.ErrCodeReuse) {
		h.Logger.Warn("authorization code reused; the session it started was ended", zap.String("client_id", client.ID))
	}
	return issued, err
}

package protocol

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// introspection is the RFC 7662 §2.2 answer for an active token; an
// inactive one is {"active":false} alone.
type introspection struct {
	Active    bool     `json:"active"`
	Scope     string   `json:"scope,omitempty"`
	ClientID  string   `json:"client_id,omitempty"`
	Username  string   `json:"username,omitempty"`
	TokenType string   `json:"token_type,omitempty"`
	Exp       int64    `json:"exp,omitempty"`
	Iat       int64    `json:"iat,omitempty"`
	Nbf       int64    `json:"nbf,omitempty"`
	Sub       string   `json:"sub,omitempty"`
	Aud       []string `json:"aud,omitempty"`
	Iss       string   `json:"iss,omitempty"`
	JTI       string   `json:"jti,omitempty"`
}

// Introspect is RFC 7662 token introspection, POST, for confidential
// clients (Basic or body credentials), about their own tokens: anything
// else, another client's token included, is {"active":false}. The body may
// also be multipart/form-data, as casdoor-go-sdk sends it.
func (h *Handler) Introspect(w http.ResponseWriter, r *http.Request) error {
	params, err := readIntrospectParams(w, r)
	if err != nil {
		return h.writeOAuthError(w, err)
	}
	client, err := h.authenticateClient(r, params)
	if err != nil {
		return h.writeOAuthError(w, err)
	}
	if client.Public {
		return h.writeOAuthError(w, clientError(false, "Token introspection is for confidential clients."))
	}
	token := params["token"]
	if token == "" {
		return h.writeOAuthError(w, badRequest("The token parameter is missing."))
	}
	res, err := h.Accounts.Introspect(r.Context(), h.Issuer(r), client.ID, token)
	if err != nil {
		return h.writeOAuthError(w, err)
	}
	if !res.Active {
		return WriteJSON(w, http.StatusOK, introspection{})
	}
	return WriteJSON(w, http.StatusOK, introspection{
		Active: true, Scope: res.Scope, ClientID: res.ClientID, Username: res.Username, TokenType: res.TokenType,
		Exp: res.ExpiresAt, Iat: res.IssuedAt, Nbf: res.IssuedAt, Sub: res.Subject, Aud: res.Audience, Iss: res.Issuer, JTI: res.JTI,
	})
}

// maxMultipartParts bounds the fields of a multipart body.
const maxMultipartParts = 16

// readIntrospectParams is readParams that also takes multipart/form-data:
// a bounded parse of form fields only (a file part is refused), into
// single-valued parameters, without the temporary files of
// Request.ParseMultipartForm.
func readIntrospectParams(w http.ResponseWriter, r *http.Request) (map[string]string, error) {
	ct, mp, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != "multipart/form-data" {
		return readParams(w, r)
	}
	const want = "The Content-Type must be application/json, application/x-www-form-urlencoded or multipart/form-data."
	if mp["boundary"] == "" {
		return nil, badRequest(want)
	}
	mr := multipart.NewReader(http.MaxBytesReader(w, r.Body, maxBodyBytes), mp["boundary"])
	params := map[string]string{}
	for n := 0; ; n++ {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return params, nil
		}
		if err != nil {
			return nil, multipartError(err)
		}
		name := part.FormName()
		if part.FileName() != "" || name == "" {
			return nil, badRequest("The multipart body must hold form fields only.")
		}
		if n >= maxMultipartParts {
			return nil, badRequest("The multipart body has more than %d fields.", maxMultipartParts)
		}
		if _, dup := params[name]; dup {
			return nil, badRequest("The parameter %q is repeated.", name)
		}
		v, err := io.ReadAll(part)
		if err != nil {
			return nil, multipartError(err)
		}
		params[name] = string(v)
	}
}

// multipartError is a body that could not be read: too large (413), else
// malformed.
func multipartError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return &httpError{status: http.StatusRequestEntityTooLarge, err: &accounts.Error{Code: accounts.CodeInvalidRequest, Description: "The request body is too large."}}
	}
	return badRequest("The multipart body is malformed.")
}

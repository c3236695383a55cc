package accounts

// Authorization codes (RFC 6749 §4.1, OpenID Connect Core §3.1): issued to
// a browser session by the authorization endpoint, redeemed once at the
// token endpoint for a new session of the client. A code is a flow state
// (flows.go): stored under a hash, valid for CodeTTL, bound to its client,
// redirect URI, PKCE challenge, nonce, scope, user and browser session.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/guestauth/caddy-guestauth/internal/ctcmp"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// CodeTTL is how long an authorization code can be redeemed (RFC 6749
// §4.1.2 recommends at most 10 minutes; a client redeems at once).
const CodeTTL = 60 * time.Second

// CodeRequest is what an authorization code is bound to, besides the
// browser session it is issued to.
type CodeRequest struct {
	ClientID, RedirectURI string
	// RedirectGiven: the authorization request named redirect_uri (rather
	// than relying on the client's only registered one), so the token
	// request must name it too (RFC 6749 §4.1.3).
	RedirectGiven bool
	// Challenge is the PKCE S256 code_challenge ("" without PKCE).
	Challenge string
	// Nonce goes into the ID token; Scope is the scope granted.
	Nonce, Scope string
}

// codeRecord is a code's flow state.
type codeRecord struct {
	ClientID      string `json:"client_id"`
	RedirectURI   string `json:"redirect_uri"`
	RedirectGiven bool   `json:"redirect_given,omitempty"`
	Challenge     string `json:"code_challenge,omitempty"`
	Nonce         string `json:"nonce,omitempty"`
	Scope         string `json:"scope,omitempty"`
	UserID        string `json:"user_id"`
	// Browser is the browser session the code was issued to; Session the
	// id of the client's session its redemption makes, chosen now so that
	// a replay can end it (RFC 6749 §4.1.2: tokens issued from a code
	// used twice are revoked).
	Browser  string    `json:"browser_session"`
	Session  string    `json:"session"`
	AuthTime time.Time `json:"auth_time"`
}

// IssueCode issues an authorization code for the signed-in browser
// session id, bound to req. Only the code's hash is stored.
func (s *Service) IssueCode(ctx context.Context, id *Identity, req CodeRequest) (string, error) {
	sid, err := uuid.NewV7()
	if err != nil {
		return "", err
	}
	rec := codeRecord{
		ClientID: req.ClientID, RedirectURI: req.RedirectURI, RedirectGiven: req.RedirectGiven,
		Challenge: req.Challenge, Nonce: req.Nonce, Scope: req.Scope,
		UserID: id.User.ID, Browser: id.Session.ID, Session: sid.String(), AuthTime: id.Session.AuthTime,
	}
	return s.putFlowState(ctx, FlowCode, CodeTTL, &rec)
}

// Redemption is a token request for an authorization code.
type Redemption struct {
	Issuer, ClientID string
	// Authenticated: the client proved its secret (a confidential
	// client), so it may leave out redirect_uri, as Casdoor's server SDKs
	// do; one it sends must still match.
	Authenticated bool
	Code          string
	// RedirectURI and Verifier are the redirect_uri and code_verifier
	// parameters, nil when absent.
	RedirectURI, Verifier *string
}

var errBadCode = &Error{Code: CodeInvalidGrant, Description: "The authorization code is invalid, expired or already used."}

// ErrCodeReuse is wrapped in the invalid_grant answer for a code redeemed
// a second time: the session its first redemption made has been ended.
var ErrCodeReuse = errors.New("authorization code reuse")

// RedeemCode redeems the code (once: a second redemption is refused and
// ends the session the first one made), after checking what it is bound
// to, with a new session of the client for the code's user, separate from
// the browser session; the user's oldest sessions beyond
// Config.MaxSessionsPerUser end. A refused redemption leaves the code as it
// was: only its client, with its redirect URI and PKCE verifier, can spend
// it. The code is spent in the transaction that stores the session
// (RedeemFlowState), so a replay always finds the session to end.
func (s *Service) RedeemCode(ctx context.Context, r Redemption) (*Issued, error) {
	now := s.now().UTC()
	if !handleOK(r.Code) {
		return nil, errBadCode
	}
	f, err := s.store.GetFlowState(ctx, FlowCode, r.Code, now)
	if err != nil {
		return nil, s.codeRefused(ctx, f, err)
	}
	var rec codeRecord
	if err := json.Unmarshal(f.Data, &rec); err != nil {
		return nil, err
	}
	if err := rec.check(r); err != nil {
		return nil, err
	}
	// The browser sign-in the code came from must still be on: a visitor
	// who signed out (or was deleted) meanwhile gives no tokens away.
	u, browser, err := s.store.Identity(ctx, rec.UserID, rec.Browser)
	if errors.Is(err, model.ErrNotFound) || err == nil && !now.Before(browser.EndsAt()) {
		return nil, &Error{Code: CodeInvalidGrant, Description: "The sign-in this authorization code came from has ended."}
	}
	if err != nil {
		return nil, err
	}
	// A code is redeemed under the issuer of the sign-in it came from:
	// sites sharing a store do not take each other's codes.
	if browser.Issuer != "" && browser.Issuer != r.Issuer {
		return nil, errBadCode
	}
	sess, err := s.newSessionID(rec.Session, u.ID, r.ClientID, r.Issuer, now)
	if err != nil {
		return nil, err
	}
	sess.AuthTime, sess.Scope = rec.AuthTime, rec.Scope
	// Sign before writing: a signing failure then leaves nothing behind.
	tok, err := s.mintNonce(r.Issuer, r.ClientID, u, sess, now, rec.Nonce)
	if err != nil {
		return nil, err
	}
	checked := f.Data
	f, _, err = s.store.RedeemFlowState(ctx, FlowCode, r.Code, now, s.cfg.MaxSessionsPerUser, func(cur *model.FlowState) (*model.Session, error) {
		if !bytes.Equal(cur.Data, checked) {
			return nil, errBadCode // not the record checked (it cannot change; a new one under the same handle would be another code)
		}
		return sess, nil
	})
	if err != nil {
		return nil, s.codeRefused(ctx, f, err)
	}
	s.cfg.Activity.Touch(u.ID, now)
	return &Issued{Tokens: *tok, User: u, Session: sess}, nil
}

// codeRefused answers a code the store did not give: spent (a replay: the
// session its redemption made is ended), unknown or expired, or the
// store's error.
func (s *Service) codeRefused(ctx context.Context, f *model.FlowState, err error) error {
	switch {
	case errors.Is(err, model.ErrSpent):
		var rec codeRecord
		if derr := json.Unmarshal(f.Data, &rec); derr != nil {
			return derr
		}
		return s.codeReplayed(ctx, &rec)
	case errors.Is(err, model.ErrNotFound):
		return errBadCode
	}
	return err
}

// check compares a redemption with what the code is bound to.
func (rec *codeRecord) check(r Redemption) error {
	if rec.ClientID != r.ClientID {
		return &Error{Code: CodeInvalidGrant, Description: "The authorization code was issued to another client."}
	}
	switch {
	case r.RedirectURI != nil && *r.RedirectURI != rec.RedirectURI:
		return &Error{Code: CodeInvalidGrant, Description: "The redirect_uri differs from the authorization request's."}
	case r.RedirectURI == nil && rec.RedirectGiven && !r.Authenticated:
		return &Error{Code: CodeInvalidRequest, Description: "The redirect_uri parameter is required: the authorization request had one."}
	}
	switch {
	case rec.Challenge == "" && r.Verifier != nil:
		// A verifier for a code issued without a challenge would let a
		// stolen code pass for a PKCE one (RFC 9700 §2.1.1).
		return &Error{Code: CodeInvalidGrant, Description: "The authorization request had no code_challenge, so no code_verifier is expected."}
	case rec.Challenge != "" && r.Verifier == nil:
		return &Error{Code: CodeInvalidRequest, Description: "The code_verifier parameter is required (PKCE)."}
	case rec.Challenge != "" && !VerifierMatches(*r.Verifier, rec.Challenge):
		return &Error{Code: CodeInvalidGrant, Description: "The code_verifier does not match the code_challenge."}
	}
	return nil
}

// VerifierMatches reports whether verifier is a PKCE code_verifier (RFC
// 7636 §4.1: 43 to 128 unreserved characters) whose S256 challenge is
// challenge, compared in constant time.
func VerifierMatches(verifier, challenge string) bool {
	if !pkceText(verifier) {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return ctcmp.Equal([]byte(b64(sum[:])), []byte(challenge))
}

// pkceText reports whether s is 43 to 128 characters of [A-Za-z0-9-._~],
// the alphabet of code verifiers (RFC 7636 §4.1).
func pkceText(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		unreserved := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
		if !unreserved {
			return false
		}
	}
	return true
}

// ValidChallenge reports whether s can be an S256 code_challenge: the
// base64url SHA-256 of a verifier, 43 characters.
func ValidChallenge(s string) bool {
	return len(s) == 43 && pkceText(s) && !containsAny(s, ".~")
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}

// codeReplayed answers a second redemption: it ends the session the first
// one made (reporting session.revoked, cause code_reuse) and refuses.
func (s *Service) codeReplayed(ctx context.Context, rec *codeRecord) error {
	p := s.withEvents(one(events.Event{Type: events.SessionRevoked, UserID: rec.UserID, ClientID: rec.ClientID, Data: map[string]any{"cause": "code_reuse", "client_ip": clientIPOf(ctx)}}))
	ended, err := s.endSession(ctx, rec.Session, p.tx())
	if err != nil {
		return err
	}
	s.observeAll(ctx, p.reported(ended, storage.TxResult{}))
	return codeReuseError{errBadCode}
}

// codeReuseError is invalid_grant with ErrCodeReuse in its chain.
type codeReuseError struct{ err *Error }

func (e codeReuseError) Error() string   { return e.err.Error() }
func (e codeReuseError) Unwrap() []error { return []error{e.err, ErrCodeReuse} }

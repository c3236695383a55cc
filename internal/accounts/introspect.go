package accounts

import (
	"context"
	"errors"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Introspection is what token introspection (RFC 7662) tells about an
// active token; see Introspect.
type Introspection struct {
	Active    bool
	Scope     string
	ClientID  string
	Username  string
	TokenType string // "Bearer" for an access token, "refresh_token" for a refresh token
	Subject   string
	Audience  []string
	Issuer    string
	JTI       string
	// IssuedAt and ExpiresAt are unix seconds; an access token's own, or
	// for a refresh token its session's sign-in and end.
	IssuedAt, ExpiresAt int64
}

// Introspect tells clientID whether token, one of its own access or
// refresh tokens, is active now: signed, unexpired, its session and user
// still there, and (a refresh token) of the session's current generation.
// Anything else, another client's token included, is inactive, never an
// error; only a store failure is.
func (s *Service) Introspect(ctx context.Context, issuer, clientID, token string) (*Introspection, error) {
	sess, gen, ok, err := parseRefresh(ctx, token, s.store.GetSession)
	if err != nil {
		return nil, err
	}
	now := s.now()
	if ok {
		if sess.ClientID != clientID || gen != sess.Generation || !now.Before(sess.EndsAt()) {
			return &Introspection{}, nil
		}
		u, err := s.store.GetUser(ctx, sess.UserID)
		if errors.Is(err, model.ErrNotFound) {
			return &Introspection{}, nil
		}
		if err != nil {
			return nil, err
		}
		scope := Scope
		if sess.Scope != "" {
			scope = sess.Scope
		}
		return &Introspection{
			Active: true, Scope: scope, ClientID: clientID, Username: u.Name, TokenType: "refresh_token",
			Subject: u.ID, Audience: []string{clientID}, Issuer: issuer,
			IssuedAt: sess.CreatedAt.Unix(), ExpiresAt: sess.EndsAt().Unix(),
		}, nil
	}
	id, err := s.Authenticate(ctx, token, issuer)
	var inv *tokens.InvalidError
	if errors.As(err, &inv) {
		return &Introspection{}, nil
	}
	if err != nil {
		return nil, err
	}
	c := id.Claims
	if c.ClientID != clientID {
		return &Introspection{}, nil
	}
	return &Introspection{
		Active: true, Scope: c.Scope, ClientID: c.ClientID, Username: id.User.Name, TokenType: "Bearer",
		Subject: c.Subject, Audience: c.Audience, Issuer: c.Issuer, JTI: c.JTI,
		IssuedAt: c.IssuedAt.Unix(), ExpiresAt: c.ExpiresAt.Unix(),
	}, nil
}

// TokenClient is the client a refresh or access token was issued to, ""
// when token is neither (unknown, forged, expired): revocation finds a
// public client's token by it when the request names no client.
func (s *Service) TokenClient(ctx context.Context, issuer, token string) (string, error) {
	sess, _, ok, err := parseRefresh(ctx, token, s.store.GetSession)
	if err != nil || ok {
		if ok {
			return sess.ClientID, nil
		}
		return "", err
	}
	c, err := s.verifier.Verify(token, issuer)
	var inv *tokens.InvalidError
	if errors.As(err, &inv) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return c.ClientID, nil
}

// EndClientSession ends session sid when it is a session of clientID for
// userID (an RP-initiated logout names it by its ID token's sid),
// reporting session.revoked with cause "logout"; anything else (already
// ended, another user's or client's) is left alone, without an error.
func (s *Service) EndClientSession(ctx context.Context, sid, userID, clientID string) error {
	if sid == "" || clientID == BrowserClientID {
		return nil
	}
	sess, err := s.store.GetSession(ctx, sid)
	if errors.Is(err, model.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if sess.UserID != userID || sess.ClientID != clientID {
		return nil
	}
	p := s.withEvents(one(events.Event{Type: events.SessionRevoked, UserID: userID, ClientID: clientID, Data: map[string]any{"cause": "logout"}}))
	ended, err := s.endSession(ctx, sid, p.tx())
	if err != nil {
		return err
	}
	s.observeAll(ctx, p.reported(ended, storage.TxResult{}))
	return nil
}

// VerifyIDTokenHint checks an ID token given back as a logout's
// id_token_hint (see tokens.Keyring.VerifyIDTokenHint); a refused one is
// a *tokens.InvalidError.
func (s *Service) VerifyIDTokenHint(raw, issuer string) (*tokens.IDTokenHint, error) {
	return s.keys.VerifyIDTokenHint(raw, issuer, s.cfg.Skew, s.now())
}

package accounts

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/ctcmp"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// ErrRefreshReuse is wrapped in the invalid_grant answer when an old
// refresh token is presented again; the whole session has been ended.
var ErrRefreshReuse = errors.New("refresh token reuse")

var errBadRefresh = &Error{Code: CodeInvalidGrant, Description: "The refresh token is invalid, expired or revoked."}

// reuseError is invalid_grant for a detected reuse; errors.Is(err,
// ErrRefreshReuse) tells the caller to log it.
type reuseError struct{ err *Error }

func (e reuseError) Error() string   { return e.err.Error() }
func (e reuseError) Unwrap() []error { return []error{e.err, ErrRefreshReuse} }

// parseRefresh splits "<session id>.<generation>.<mac>" and checks the MAC
// against the session's key; ok is false for anything not minted by us.
func parseRefresh(ctx context.Context, token string, sess func(ctx context.Context, id string) (*model.Session, error)) (s *model.Session, gen uint64, ok bool, err error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[0]) != 36 || len(token) > 256 {
		return nil, 0, false, nil
	}
	gen, perr := strconv.ParseUint(parts[1], 10, 64)
	if perr != nil || parts[1] != strconv.FormatUint(gen, 10) {
		return nil, 0, false, nil
	}
	s, err = sess(ctx, parts[0])
	if errors.Is(err, model.ErrNotFound) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	want := refreshMAC(s.RefreshKey, s.ID, parts[1])
	if !ctcmp.Equal([]byte(want), []byte(parts[2])) || gen > s.Generation {
		return nil, 0, false, nil
	}
	return s, gen, true, nil
}

// issuedBy reports whether sess may be used under issuer: the one it was
// started under, or any for a session stored before sessions had one (it
// is bound to the issuer of its next write; see model.Session.Issuer).
func issuedBy(sess *model.Session, issuer string) bool {
	return sess.Issuer == "" || sess.Issuer == issuer
}

// Refresh is the refresh_token grant: it rotates the session's refresh token
// and issues tokens carrying the user's current name, tag and is_anonymous.
// Presenting an already-used refresh token ends the whole session (reuse
// detection, OAuth 2.0 Security BCP). A refresh token is honoured only
// under the issuer its session was started under: another site sharing
// the store answers invalid_grant, and the session goes on.
func (s *Service) Refresh(ctx context.Context, issuer, clientID, token string) (*Issued, error) {
	issued, err := s.refresh(ctx, issuer, clientID, token)
	s.observeRefresh(ctx, clientID, err)
	return issued, err
}

func (s *Service) refresh(ctx context.Context, issuer, clientID, token string) (*Issued, error) {
	sess, gen, ok, err := parseRefresh(ctx, token, s.store.GetSession)
	if err != nil {
		return nil, err
	}
	if !ok || sess.ClientID != clientID || !issuedBy(sess, issuer) {
		return nil, errBadRefresh
	}
	now := s.now().UTC()
	if gen < sess.Generation {
		if _, err := s.endSession(ctx, sess.ID, nil); err != nil {
			return nil, err
		}
		return nil, reuseError{errBadRefresh}
	}
	if !now.Before(sess.EndsAt()) {
		if _, err := s.endSession(ctx, sess.ID, nil); err != nil {
			return nil, err
		}
		return nil, errBadRefresh
	}
	sid, raced := sess.ID, false
	sess, err = s.store.UpdateSession(ctx, sid, func(cur *model.Session) error {
		raced = cur.Generation != gen
		if raced {
			return ErrRefreshReuse
		}
		if !issuedBy(cur, issuer) {
			return errBadRefresh
		}
		cur.Issuer = issuer // binds a session stored without one
		cur.Generation++
		cur.LastUsedAt = now
		cur.IdleExpiresAt = now.Add(s.cfg.SessionIdle)
		return nil
	}, nil)
	switch {
	case errors.Is(err, errBadRefresh):
		return nil, errBadRefresh
	case raced:
		// Two uses of one token: the other one won, so this is a reuse.
		if _, err := s.endSession(ctx, sid, nil); err != nil {
			return nil, err
		}
		return nil, reuseError{errBadRefresh}
	case errors.Is(err, model.ErrNotFound):
		return nil, errBadRefresh
	case err != nil:
		return nil, err
	}
	u, err := s.store.GetUser(ctx, sess.UserID)
	if errors.Is(err, model.ErrNotFound) {
		return nil, errBadRefresh
	}
	if err != nil {
		return nil, err
	}
	tok, err := s.mint(issuer, clientID, u, sess, now)
	if err != nil {
		return nil, err
	}
	s.cfg.Activity.Touch(u.ID, now)
	return &Issued{Tokens: *tok, User: u, Session: sess}, nil
}

// endSession deletes a session, storing ev's events with it, and reports
// whether it did; one already gone is not an error (ended is then false,
// and nothing was stored).
func (s *Service) endSession(ctx context.Context, id string, ev storage.Events) (ended bool, err error) {
	err = s.store.DeleteSession(ctx, id, ev)
	if errors.Is(err, model.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Revoke implements RFC 7009 for clientID: a refresh token (any generation)
// or an access token ends its session. Unknown, invalid and expired tokens
// are not errors (RFC 7009 §2.2), nor is a refresh token of another issuer
// (it is not this site's: nothing is ended); a token of another client is
// refused.
func (s *Service) Revoke(ctx context.Context, issuer, clientID, token string) error {
	sess, _, ok, err := parseRefresh(ctx, token, s.store.GetSession)
	if err != nil {
		return err
	}
	if ok && !issuedBy(sess, issuer) {
		return nil
	}
	if ok {
		if sess.ClientID != clientID {
			return refuse(CodeUnauthorizedClient, "The token was not issued to this client.")
		}
		_, err := s.endSession(ctx, sess.ID, nil)
		return err
	}
	c, err := s.verifier.Verify(token, issuer)
	if err != nil {
		var inv *tokens.InvalidError
		if errors.As(err, &inv) {
			return nil
		}
		return err
	}
	if c.ClientID != clientID {
		return refuse(CodeUnauthorizedClient, "The token was not issued to this client.")
	}
	_, err = s.endSession(ctx, c.SessionID, nil)
	return err
}

// Logout ends the identity's session.
func (s *Service) Logout(ctx context.Context, id *Identity) error {
	p := s.withEvents(one(events.Event{Type: events.SessionRevoked, UserID: id.User.ID, ClientID: id.Session.ClientID, Data: map[string]any{"cause": "logout"}}))
	ended, err := s.endSession(ctx, id.Session.ID, p.tx())
	if err != nil {
		return err
	}
	s.observeAll(ctx, p.reported(ended, storage.TxResult{}))
	return nil
}

// UserInfo is the OIDC UserInfo response (OIDC Core §5.3) for id.
func UserInfo(u *model.User, scope string) map[string]any {
	info := map[string]any{
		"sub":                u.ID,
		"name":               u.Name,
		"preferred_username": u.Name,
		"tag":                u.Tag,
		"is_anonymous":       u.IsAnonymous(),
		// Authgear's names, which its SDKs read (see tokens.Mint).
		"https://authgear.com/claims/user/is_anonymous":       u.IsAnonymous(),
		"https://authgear.com/claims/user/is_verified":        u.EmailVerified && u.Email != "",
		"https://authgear.com/claims/user/can_reauthenticate": u.PasswordHash != "",
	}
	if u.DisplayName != "" {
		info["nickname"] = u.DisplayName
	}
	if u.Email != "" && tokens.HasScope(scope, "email") {
		info["email"], info["email_verified"] = u.Email, u.EmailVerified
	}
	return info
}

// SweepSessionsEvery runs SweepSessions every interval until ctx ends,
// telling report of each sweep (how many it deleted, or its error).
func SweepSessionsEvery(ctx context.Context, st SessionSweeper, interval time.Duration, batch int, report func(int, error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		report(SweepSessions(ctx, st, time.Now, batch))
	}
}

// SweepSessions deletes sessions that ended (idle or absolute) in batches of
// batch, each its own short write transaction, marking guests left without a
// session orphaned. It returns how many it deleted.
func SweepSessions(ctx context.Context, st SessionSweeper, now func() time.Time, batch int) (int, error) {
	total := 0
	for {
		n, err := st.DeleteEndedSessions(ctx, now(), batch)
		total += n
		if err != nil || n < batch {
			return total, err
		}
	}
}

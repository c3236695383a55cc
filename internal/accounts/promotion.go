package accounts

// Authgear's web anonymous users (the @authgear/web SDK): a guest made for
// a client that has neither a key pair nor a secret (as a browser guest
// is, under the guest creation limits), signed in again with its refresh
// token only while it is a guest, and promoted to a named account through
// the authorization endpoint with a promotion code, keeping its user id.
//
// A promotion code is single-use, short-lived and stored hashed: it is a
// challenge record (the store's single-use primitive) of its own purpose,
// under its own key space, bound to the guest and the client.

import (
	"context"
	"crypto/rand"
	"errors"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

const (
	// PurposePromotion is the challenge purpose of a promotion code.
	PurposePromotion = "anonymous_promotion"
	// PromotionCodeLifetime is how long a promotion code can be used
	// (Authgear: 5 minutes); the SDK goes to the authorization endpoint
	// with it at once.
	PromotionCodeLifetime = 5 * time.Minute
	// promotionKey prefixes a promotion code's challenge token, so a
	// promotion code and a device challenge can never be taken for each
	// other.
	promotionKey = "promotion:"
	// maxPromotionCode bounds what is even looked up.
	maxPromotionCode = 64
)

// Refusals of the web anonymous user calls.
var (
	errNotAnonymous = &Error{Code: CodeInvalidRequest, Description: "The user is no longer anonymous."}
	errBadPromotion = &Error{Code: CodeInvalidGrant, Description: "The promotion code is invalid, expired or already used."}
)

// CreateWebGuest creates a guest for clientID, as Authgear's web anonymous
// sign-up does, under the guest creation limits for clientIP; it reports
// guest.created with via "web".
func (s *Service) CreateWebGuest(ctx context.Context, issuer, clientID, clientIP string) (*Issued, error) {
	return s.createGuestVia(ctx, issuer, clientID, clientIP, "web")
}

// guestSession reads the session of refresh token and its user, refusing
// (invalid_grant) a token that is not the session's current one or of an
// ended session, without side effects. A user who is no longer a guest is
// refused too.
func (s *Service) guestSession(ctx context.Context, token string) (*model.Session, *model.User, error) {
	sess, gen, ok, err := parseRefresh(ctx, token, s.store.GetSession)
	if err != nil {
		return nil, nil, err
	}
	if !ok || gen != sess.Generation || !s.now().Before(sess.EndsAt()) {
		return nil, nil, errBadRefresh
	}
	u, err := s.store.GetUser(ctx, sess.UserID)
	if errors.Is(err, model.ErrNotFound) {
		return nil, nil, errBadRefresh
	}
	if err != nil {
		return nil, nil, err
	}
	if !u.IsAnonymous() {
		return nil, nil, errNotAnonymous
	}
	return sess, u, nil
}

// GuestRefresh is Authgear's anonymous sign-up with a stored refresh
// token: the same guest signed in again, by the refresh_token grant
// (rotating the token, with its reuse detection), as long as it is still
// a guest. A user who has signed up since is refused (errNotAnonymous)
// before the grant, its token left as it was.
func (s *Service) GuestRefresh(ctx context.Context, issuer, clientID, token string) (*Issued, error) {
	sess, _, ok, err := parseRefresh(ctx, token, s.store.GetSession)
	if err != nil {
		return nil, err
	}
	if ok {
		u, err := s.store.GetUser(ctx, sess.UserID)
		if err != nil && !errors.Is(err, model.ErrNotFound) {
			return nil, err
		}
		if err == nil && !u.IsAnonymous() {
			return nil, errNotAnonymous
		}
	}
	return s.Refresh(ctx, issuer, clientID, token)
}

// PromotionCode is an issued promotion code.
type PromotionCode struct {
	Code      string
	ExpiresAt time.Time
}

// NewPromotionCode issues a promotion code for the guest of refresh token
// (its current one), valid for PromotionCodeLifetime, bound to the guest
// and to its session's client. Issuance is a store write, so it draws on
// the challenge limits of clientIP and of the site.
func (s *Service) NewPromotionCode(ctx context.Context, token, clientIP string) (*PromotionCode, error) {
	sess, u, err := s.guestSession(ctx, token)
	if err != nil {
		return nil, err
	}
	if wait := s.byIPChallenge.Take(clientIP); wait > 0 {
		return nil, s.throttled(LimitIP, wait)
	}
	if wait := s.challengeAll.Take(""); wait > 0 {
		return nil, s.throttled(LimitGlobal, wait)
	}
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	code := challengeEncoding.EncodeToString(b)
	now := s.now().UTC()
	c := model.Challenge{Purpose: PurposePromotion, CreatedAt: now, ExpiresAt: now.Add(PromotionCodeLifetime), UserID: u.ID, ClientID: sess.ClientID}
	if err := s.store.PutChallenge(ctx, promotionKey+code, c); err != nil {
		return nil, err
	}
	return &PromotionCode{Code: code, ExpiresAt: c.ExpiresAt}, nil
}

// ConsumePromotionCode takes the promotion code once (of concurrent
// callers, one gets it) for clientID, the client of the authorization
// request carrying it, and returns the guest to promote. A code that is
// unknown, used, expired, of another client, or whose guest is gone or no
// longer a guest is invalid_grant.
func (s *Service) ConsumePromotionCode(ctx context.Context, code, clientID string) (*model.User, error) {
	if code == "" || len(code) > maxPromotionCode {
		return nil, errBadPromotion
	}
	c, err := s.store.ConsumeChallenge(ctx, promotionKey+code, s.now())
	if errors.Is(err, model.ErrNotFound) {
		return nil, errBadPromotion
	}
	if err != nil {
		return nil, err
	}
	if c.Purpose != PurposePromotion || c.ClientID != clientID || c.UserID == "" {
		return nil, errBadPromotion
	}
	u, err := s.store.GetUser(ctx, c.UserID)
	if errors.Is(err, model.ErrNotFound) {
		return nil, errBadPromotion
	}
	if err != nil {
		return nil, err
	}
	if !u.IsAnonymous() {
		return nil, errBadPromotion
	}
	return u, nil
}

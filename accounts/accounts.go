// Package accounts is guestauth's domain logic: creating guests, issuing
// token sets bound to sessions, and resolving an access token to the current
// user. It knows nothing of HTTP; the Caddy module is a thin layer over it.
package accounts

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/tokens"
)

// Config holds the lifetimes and algorithm of a Service.
type Config struct {
	Alg jwa.SignatureAlgorithm
	// AccessTTL is the access and ID token lifetime.
	AccessTTL time.Duration
	// SessionIdle ends a session not refreshed for this long.
	SessionIdle time.Duration
	// SessionLifetime ends a session this long after sign-in, whatever its use.
	SessionLifetime time.Duration
	// Skew is the clock skew tolerated when checking tokens.
	Skew time.Duration
	// Audiences are the client ids whose access tokens Authenticate and
	// Revoke accept (the token's aud): the site's clients. With none, no
	// access token is accepted.
	Audiences []string
	// CacheSize bounds the verified-token cache (0 disables it).
	CacheSize int
	// AccountLimit and IPLimit throttle failed password checks per account
	// name and per client IP.
	AccountLimit Limit
	IPLimit      Limit
	// Argon2 is the cost of new password hashes (DefaultArgon2 when zero).
	Argon2 Argon2Params
	// Guests limits guest creation.
	Guests GuestLimits
	// Challenges limits device challenge issuance.
	Challenges ChallengeLimits
	// Activity, when set, records users' activity (see Activity).
	Activity *Activity
}

// Service is safe for concurrent use.
type Service struct {
	store    storage.Store
	keys     *tokens.Keyring
	verifier *tokens.Verifier
	cfg      Config
	now      func() time.Time
	byAcct   *Throttle
	byIP     *Throttle
	// guest creation limits
	byIPCreate *Throttle
	global     *Throttle
	// device challenge issuance per IP and for the whole site
	byIPChallenge *Throttle
	challengeAll  *Throttle
}

// New makes a Service. now is the clock (time.Now when nil); tests inject one.
func New(store storage.Store, keys *tokens.Keyring, cfg Config, now func() time.Time) (*Service, error) {
	if now == nil {
		now = time.Now
	}
	if cfg.AccessTTL <= 0 || cfg.SessionIdle <= 0 || cfg.SessionLifetime <= 0 {
		return nil, errors.New("token and session lifetimes must be positive")
	}
	if err := keys.EnsureSigner(cfg.Alg); err != nil {
		return nil, err
	}
	if cfg.Argon2 == (Argon2Params{}) {
		cfg.Argon2 = DefaultArgon2
	}
	return &Service{
		store:         store,
		keys:          keys,
		cfg:           cfg,
		now:           now,
		verifier:      &tokens.Verifier{Keys: keys, Skew: cfg.Skew, Now: now, Cache: tokens.NewCache(cfg.CacheSize, now), Audiences: slices.Clone(cfg.Audiences)},
		byAcct:        NewThrottle(cfg.AccountLimit, now),
		byIP:          NewThrottle(cfg.IPLimit, now),
		byIPCreate:    NewThrottle(cfg.Guests.PerIP, now),
		global:        NewThrottle(cfg.Guests.Global, now),
		byIPChallenge: NewThrottle(cfg.Challenges.PerIP, now),
		challengeAll:  NewThrottle(cfg.Challenges.Global, now),
	}, nil
}

// Error is a refusal the caller can show: Code is an OAuth 2.0 error code
// (RFC 6749 §5.2), Description a human sentence with no secrets in it.
type Error struct {
	Code        string
	Description string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// OAuth 2.0 error codes used here.
const (
	CodeInvalidRequest       = "invalid_request"
	CodeInvalidClient        = "invalid_client"
	CodeInvalidGrant         = "invalid_grant"
	CodeUnauthorizedClient   = "unauthorized_client"
	CodeUnsupportedGrantType = "unsupported_grant_type"
)

func refuse(code, format string, args ...any) error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...)}
}

// TokenResponse is the token endpoint's JSON answer, as in the Casdoor docs.
type TokenResponse struct {
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
}

// Issued is the result of a successful grant.
type Issued struct {
	Tokens  TokenResponse
	User    *storage.User
	Session *storage.Session
}

// Scope is the scope every token set carries.
const Scope = "openid"

// CreateGuest creates a guest user (username guest_<uuid>, tag guest-user,
// no usable password) with its first session, and issues its tokens. The
// guest creation limits apply to clientIP.
func (s *Service) CreateGuest(issuer, clientID, clientIP string) (*Issued, error) {
	if err := s.admitGuest(clientIP); err != nil {
		return nil, err
	}
	return s.createGuest(issuer, clientID, nil)
}

func (s *Service) createGuest(issuer, clientID string, dev *storage.Device) (*Issued, error) {
	now := s.now().UTC()
	id := uuid.New()
	u := &storage.User{
		ID:        id.String(),
		Name:      storage.GuestNamePrefix + id.String(),
		Tag:       storage.TagGuest,
		CreatedAt: now,
		UpdatedAt: now,
	}
	if dev != nil {
		dev.UserID = u.ID
		u.DeviceKID = dev.KID
	}
	sess, err := s.newSession(u.ID, clientID, now)
	if err != nil {
		return nil, err
	}
	// Sign before writing: a signing failure then leaves nothing behind.
	tok, err := s.mint(issuer, clientID, u, sess, now)
	if err != nil {
		return nil, err
	}
	if err := s.store.CreateUser(u, sess, dev); err != nil {
		return nil, fmt.Errorf("storing guest: %w", err)
	}
	return &Issued{Tokens: *tok, User: u, Session: sess}, nil
}

func (s *Service) newSession(userID, clientID string, now time.Time) (*storage.Session, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &storage.Session{
		ID:            uuid.NewString(),
		UserID:        userID,
		ClientID:      clientID,
		AuthTime:      now,
		CreatedAt:     now,
		LastUsedAt:    now,
		ExpiresAt:     now.Add(s.cfg.SessionLifetime),
		IdleExpiresAt: now.Add(s.cfg.SessionIdle),
		RefreshKey:    key,
		Generation:    1,
	}, nil
}

// startSession signs an existing user in: a new session and its tokens.
// storage.ErrNotFound means the user was deleted meanwhile.
func (s *Service) startSession(issuer, clientID string, u *storage.User, now time.Time) (*Issued, error) {
	sess, err := s.newSession(u.ID, clientID, now)
	if err != nil {
		return nil, err
	}
	tok, err := s.mint(issuer, clientID, u, sess, now)
	if err != nil {
		return nil, err
	}
	if err := s.store.PutSession(sess); err != nil {
		return nil, err
	}
	s.cfg.Activity.Touch(u.ID, now)
	return &Issued{Tokens: *tok, User: u, Session: sess}, nil
}

// mint signs the token set of sess's current generation.
func (s *Service) mint(issuer, clientID string, u *storage.User, sess *storage.Session, now time.Time) (*TokenResponse, error) {
	m, err := s.keys.Mint(tokens.Grant{
		Alg: s.cfg.Alg, Issuer: issuer, ClientID: clientID, Scope: Scope,
		Now: now, AccessTTL: s.cfg.AccessTTL, IDTTL: s.cfg.AccessTTL,
	}, tokens.Subject{
		UserID: u.ID, Name: u.Name, Tag: u.Tag, Anonymous: u.IsAnonymous(),
		SessionID: sess.ID, AuthTime: sess.AuthTime,
	})
	if err != nil {
		return nil, err
	}
	return &TokenResponse{
		AccessToken:  m.AccessToken,
		IDToken:      m.IDToken,
		RefreshToken: refreshToken(sess, sess.Generation),
		TokenType:    "Bearer",
		ExpiresIn:    m.ExpiresIn,
		Scope:        Scope,
	}, nil
}

// A refresh token is "<session id>.<generation>.<mac>": opaque to clients,
// valid only for the session's current generation, and checkable for reuse
// of an older generation without storing every token ever issued.
func refreshToken(sess *storage.Session, gen uint64) string {
	g := strconv.FormatUint(gen, 10)
	return sess.ID + "." + g + "." + refreshMAC(sess.RefreshKey, sess.ID, g)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func refreshMAC(key []byte, sid, gen string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(sid + "." + gen))
	return b64(h.Sum(nil))
}

// Identity is who an access token speaks for, as of now.
type Identity struct {
	User    *storage.User
	Session *storage.Session
	Claims  *tokens.AccessClaims
}

// Authenticate verifies an access token issued by issuer and reads its user
// and session from the store, so a deleted user or an ended session stops
// at once and an upgrade shows at once, whatever the token says.
func (s *Service) Authenticate(raw, issuer string) (*Identity, error) {
	c, err := s.verifier.Verify(raw, issuer)
	if err != nil {
		return nil, err
	}
	u, sess, err := s.store.Identity(c.Subject, c.SessionID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, &tokens.InvalidError{Reason: ReasonSessionEnded}
	}
	if err != nil {
		return nil, err
	}
	now := s.now()
	if !now.Before(sess.EndsAt()) {
		return nil, &tokens.InvalidError{Reason: ReasonSessionEnded}
	}
	s.cfg.Activity.Touch(u.ID, now)
	return &Identity{User: u, Session: sess, Claims: c}, nil
}

// ReasonSessionEnded: the token's user or session no longer exists or expired.
const ReasonSessionEnded = "session_ended"

// Package accounts is guestauth's domain logic: creating guests, issuing
// token sets bound to sessions, and resolving an access token to the current
// user. It knows nothing of HTTP; the Caddy module is a thin layer over it.
package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Config holds the lifetimes and algorithm of a Service.
type Config struct {
	Alg jwa.SignatureAlgorithm
	// LimitHits counts the Service's limit refusals for its store's daily
	// counters (nil: not counted).
	LimitHits *LimitHits
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
	// AccountLimit is the guess budget per account name of sign-ins
	// without a valid device token; DeviceLimit that of each device token
	// and of each session's old-password checks. AccountHashLimit and
	// IPLimit bound password hashes per account name and per client IP
	// whatever the outcome. See budget. A zero Limit disables its budget.
	AccountLimit     Limit
	DeviceLimit      Limit
	AccountHashLimit Limit
	IPLimit          Limit
	// MaxSessionsPerUser caps a user's live sessions: a sign-in beyond it
	// ends the user's oldest sessions (0: no cap).
	MaxSessionsPerUser int
	// Argon2 is the cost of new password hashes (DefaultArgon2 when zero).
	Argon2 Argon2Params
	// Guests limits guest creation.
	Guests GuestLimits
	// Challenges limits device challenge issuance.
	Challenges ChallengeLimits
	// Activity, when set, records users' activity (see Activity).
	Activity *Activity
	// NameUserLimit and NameIPLimit throttle username changes per user and
	// per client IP: every attempt counts, refused ones (a taken name)
	// included, so the update cannot be used to probe which names exist.
	NameUserLimit Limit
	NameIPLimit   Limit
	// ReservedNames nobody may take by a rename, compared as model.NameKey
	// (nil reserves none; see DefaultReservedNames).
	ReservedNames []string
	// Observer, when set, is told of each domain outcome (see Observer).
	Observer Observer
	// Stager, when set, has the lifecycle events stored in the outbox in
	// the transaction of the write they report (see Stager).
	Stager Stager
	// BrowserUnconfirmed ends a browser guest's first session this long
	// after its creation unless its cookie comes back (see
	// CreateBrowserGuest); 0 gives it the normal idle timeout.
	BrowserUnconfirmed time.Duration
	// Throttles, when set, gives the Service each of its throttles instead
	// of NewThrottle, so a caller can keep their state beyond one Service
	// (the Caddy module keeps it across config reloads). name says which
	// limit it is (one of the Throttle* names), l its configured Limit;
	// the clock is the caller's. It may return nil to disable the limit.
	Throttles func(name string, l Limit) *Throttle
	// AdmitLock, when set, is the lock that makes a password attempt's
	// admission all-or-nothing across its budgets (see Service.admit).
	// Services given the same throttles by Config.Throttles must share it
	// (the Caddy module keeps it in the pool entry with the buckets), or
	// two of them could each admit an attempt on a budget's last try. nil:
	// a lock of the Service's own.
	AdmitLock sync.Locker
	// SharedLimits, when set, is asked for the limits that must hold
	// across every process using the store — the account's guess budget
	// (ThrottleSignInAccount), its hash budget (ThrottleSignInHash) and the
	// global guest rate (ThrottleGuestGlobal) — and a Limiter it returns
	// replaces that throttle (see StoreLimit); nil keeps it in memory. The
	// other limits (per client IP, per device, challenges, name changes)
	// always stay in this process, so N processes allow N times them.
	SharedLimits func(name string, l Limit) Limiter
	// Mailer, when set, sends the Service's mail (email.go): without it,
	// nothing about email is offered.
	Mailer Mailer
	// MailAddressLimit and MailIPLimit bound the mail a visitor can have
	// sent (verification, reset and sign-in links) per address and per
	// client network; every request counts, before any lookup.
	MailAddressLimit Limit
	MailIPLimit      Limit
	// Organization is the owner claim of the tokens and the owner of every
	// user in Casdoor's user API (DefaultOrganization when empty).
	Organization string
}

// DefaultOrganization is Casdoor's built-in organization's name.
const DefaultOrganization = "built-in"

// Names of the Service's throttles, as passed to Config.Throttles.
const (
	ThrottleSignInAccount   = "signin_account"
	ThrottleSignInDevice    = "signin_device"
	ThrottleSignInHash      = "signin_hash"
	ThrottleSignInIP        = "signin_ip"
	ThrottleGuestIP         = "guest_ip"
	ThrottleGuestGlobal     = "guest_global"
	ThrottleChallengeIP     = "challenge_ip"
	ThrottleChallengeGlobal = "challenge_global"
	ThrottleNameUser        = "name_user"
	ThrottleNameIP          = "name_ip"
	ThrottleMailAddress     = "mail_address"
	ThrottleMailIP          = "mail_ip"
)

// Service is safe for concurrent use.
type Service struct {
	store    Store
	keys     *tokens.Keyring
	verifier *tokens.Verifier
	cfg      Config
	now      func() time.Time
	// password budgets (see budget); admitMu makes admit all-or-nothing
	// (Config.AdmitLock)
	admitMu sync.Locker
	byAcct  *Throttle
	// byAcctShared, hashesShared and globalShared, when set, replace
	// byAcct, hashesByAcct and global (see Config.SharedLimits).
	byAcctShared, hashesShared, globalShared Limiter
	byDevice                                 *Throttle
	hashesByAcct                             *Throttle
	byIP                                     *Throttle
	deviceKey                                []byte
	hashHook                                 func() // tests: called before each password hash
	admitHook                                func() // tests: called in admitLocal when it admits, before the take
	// guest creation limits
	byIPCreate *Throttle
	global     *Throttle
	// device challenge issuance per IP and for the whole site
	byIPChallenge *Throttle
	challengeAll  *Throttle
	// username changes (profile.go)
	names nameRules
	// mail sent at a visitor's request (email.go)
	mailByAddr, mailByIP *Throttle
	// browser sessions being slid (browser.go), by session id
	sliding sync.Map
}

// New makes a Service. now is the clock (time.Now when nil); tests inject one.
func New(ctx context.Context, store Store, keys *tokens.Keyring, cfg Config, now func() time.Time) (*Service, error) {
	if now == nil {
		now = time.Now
	}
	if cfg.AccessTTL <= 0 || cfg.SessionIdle <= 0 || cfg.SessionLifetime <= 0 {
		return nil, errors.New("token and session lifetimes must be positive")
	}
	if err := keys.EnsureSigner(ctx, cfg.Alg); err != nil {
		return nil, err
	}
	if cfg.Argon2 == (Argon2Params{}) {
		cfg.Argon2 = DefaultArgon2
	}
	if cfg.Organization == "" {
		cfg.Organization = DefaultOrganization
	}
	deviceKey, err := keys.DeriveSecret(cfg.Alg, deviceTokenPurpose)
	if err != nil {
		return nil, err
	}
	mk := cfg.Throttles
	if mk == nil {
		mk = func(_ string, l Limit) *Throttle { return NewThrottle(l, now) }
	}
	shared := func(name string, l Limit) Limiter {
		if cfg.SharedLimits == nil || l.Burst <= 0 || l.Interval <= 0 {
			return nil
		}
		return cfg.SharedLimits(name, l)
	}
	// A limit kept in the store has no in-memory throttle.
	local := func(sh Limiter, name string, l Limit) *Throttle {
		if sh != nil {
			return nil
		}
		return mk(name, l)
	}
	admitMu := cfg.AdmitLock
	if admitMu == nil {
		admitMu = new(sync.Mutex)
	}
	byAcctShared := shared(ThrottleSignInAccount, cfg.AccountLimit)
	hashesShared := shared(ThrottleSignInHash, cfg.AccountHashLimit)
	globalShared := shared(ThrottleGuestGlobal, cfg.Guests.Global)
	return &Service{
		admitMu:       admitMu,
		byAcctShared:  byAcctShared,
		hashesShared:  hashesShared,
		globalShared:  globalShared,
		store:         store,
		keys:          keys,
		cfg:           cfg,
		now:           now,
		verifier:      &tokens.Verifier{Keys: keys, Skew: cfg.Skew, Now: now, Cache: tokens.NewCache(cfg.CacheSize), Audiences: slices.Clone(cfg.Audiences)},
		byAcct:        local(byAcctShared, ThrottleSignInAccount, cfg.AccountLimit),
		byDevice:      mk(ThrottleSignInDevice, cfg.DeviceLimit),
		hashesByAcct:  local(hashesShared, ThrottleSignInHash, cfg.AccountHashLimit),
		byIP:          mk(ThrottleSignInIP, cfg.IPLimit),
		deviceKey:     deviceKey,
		byIPCreate:    mk(ThrottleGuestIP, cfg.Guests.PerIP),
		global:        local(globalShared, ThrottleGuestGlobal, cfg.Guests.Global),
		byIPChallenge: mk(ThrottleChallengeIP, cfg.Challenges.PerIP),
		challengeAll:  mk(ThrottleChallengeGlobal, cfg.Challenges.Global),
		names:         newNameRules(cfg, mk),
		mailByAddr:    mk(ThrottleMailAddress, cfg.MailAddressLimit),
		mailByIP:      mk(ThrottleMailIP, cfg.MailIPLimit),
	}, nil
}

// Now is the Service's clock.
func (s *Service) Now() time.Time { return s.now() }

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
	// DeviceToken (an extension) is returned by password sign-in; sent
	// back as the device_token parameter of later sign-ins, it keeps
	// failures from elsewhere from locking this client out (see SignIn).
	DeviceToken string `json:"device_token,omitempty"`
}

// Issued is the result of a successful grant.
type Issued struct {
	Tokens  TokenResponse
	User    *model.User
	Session *model.Session
}

// Scope is the scope every token set carries.
const Scope = "openid"

// CreateGuest creates a guest user (username guest_<uuid>, tag guest-user,
// no usable password) with its first session, and issues its tokens. The
// guest creation limits apply to clientIP.
func (s *Service) CreateGuest(ctx context.Context, issuer, clientID, clientIP string) (*Issued, error) {
	return s.createGuestVia(ctx, issuer, clientID, clientIP, "code")
}

// createGuestVia is CreateGuest reporting via as the way the guest came.
func (s *Service) createGuestVia(ctx context.Context, issuer, clientID, clientIP, via string) (*Issued, error) {
	if err := s.admitGuest(ctx, clientIP); err != nil {
		return nil, err
	}
	p := s.withEvents(created(events.Event{Type: events.GuestCreated, ClientID: clientID, Data: map[string]any{"via": via}}))
	issued, err := s.createGuest(ctx, issuer, clientID, nil, p.tx())
	if err != nil {
		return nil, err
	}
	s.observeAll(ctx, p.stored(storage.TxResult{Created: []model.User{*issued.User}}))
	return issued, nil
}

// createGuest creates a guest (with dev, when not nil) and its first
// session, storing ev's events with it.
func (s *Service) createGuest(ctx context.Context, issuer, clientID string, dev *model.Device, ev storage.Events) (*Issued, error) {
	now := s.now().UTC()
	u, err := newGuest(now)
	if err != nil {
		return nil, err
	}
	if dev != nil {
		dev.UserID = u.ID
		u.DeviceKID = dev.KID
	}
	sess, err := s.newSession(u.ID, clientID, issuer, now)
	if err != nil {
		return nil, err
	}
	// Sign before writing: a signing failure then leaves nothing behind.
	tok, err := s.mint(issuer, clientID, u, sess, now)
	if err != nil {
		return nil, err
	}
	if err := s.store.CreateUser(ctx, u, sess, dev, ev); err != nil {
		return nil, fmt.Errorf("storing guest: %w", err)
	}
	return &Issued{Tokens: *tok, User: u, Session: sess}, nil
}

// newSession is a new session of userID through clientID, bound to issuer
// (see model.Session.Issuer).
func (s *Service) newSession(userID, clientID, issuer string, now time.Time) (*model.Session, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	return s.newSessionID(id.String(), userID, clientID, issuer, now)
}

// newSessionID is newSession with the id chosen beforehand (an
// authorization code names the session its redemption makes).
func (s *Service) newSessionID(id, userID, clientID, issuer string, now time.Time) (*model.Session, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return &model.Session{
		ID:            id,
		UserID:        userID,
		ClientID:      clientID,
		Issuer:        issuer,
		AuthTime:      now,
		CreatedAt:     now,
		LastUsedAt:    now,
		ExpiresAt:     now.Add(s.cfg.SessionLifetime),
		IdleExpiresAt: now.Add(s.cfg.SessionIdle),
		RefreshKey:    key,
		Generation:    1,
	}, nil
}

// startSession signs an existing user in: a new session and its tokens,
// ending the user's oldest sessions beyond Config.MaxSessionsPerUser.
// model.ErrNotFound means the user was deleted meanwhile.
func (s *Service) startSession(ctx context.Context, issuer, clientID string, u *model.User, now time.Time) (*Issued, error) {
	sess, err := s.newSession(u.ID, clientID, issuer, now)
	if err != nil {
		return nil, err
	}
	tok, err := s.mint(issuer, clientID, u, sess, now)
	if err != nil {
		return nil, err
	}
	if _, err := s.store.PutSessionLimit(ctx, sess, s.cfg.MaxSessionsPerUser); err != nil {
		return nil, err
	}
	s.cfg.Activity.Touch(u.ID, now)
	return &Issued{Tokens: *tok, User: u, Session: sess}, nil
}

// mint signs the token set of sess's current generation.
func (s *Service) mint(issuer, clientID string, u *model.User, sess *model.Session, now time.Time) (*TokenResponse, error) {
	return s.mintNonce(issuer, clientID, u, sess, now, "")
}

// mintNonce is mint with the nonce of an authorization request in the ID
// token. The scope is the session's (an authorization code's), else Scope.
func (s *Service) mintNonce(issuer, clientID string, u *model.User, sess *model.Session, now time.Time, nonce string) (*TokenResponse, error) {
	scope := Scope
	if sess.Scope != "" {
		scope = sess.Scope
	}
	m, err := s.keys.Mint(tokens.Grant{
		Alg: s.cfg.Alg, Issuer: issuer, ClientID: clientID, Scope: scope, Nonce: nonce,
		Now: now, AccessTTL: s.cfg.AccessTTL, IDTTL: s.cfg.AccessTTL, Owner: s.cfg.Organization,
	}, tokens.Subject{
		UserID: u.ID, Name: u.Name, Tag: u.Tag, Anonymous: u.IsAnonymous(), HasPassword: u.PasswordHash != "",
		SessionID: sess.ID, AuthTime: sess.AuthTime, Email: u.Email, EmailVerified: u.EmailVerified,
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
		Scope:        scope,
	}, nil
}

// A refresh token is "<session id>.<generation>.<mac>": opaque to clients,
// valid only for the session's current generation, and checkable for reuse
// of an older generation without storing every token ever issued.
func refreshToken(sess *model.Session, gen uint64) string {
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
	User    *model.User
	Session *model.Session
	Claims  *tokens.AccessClaims
}

// Authenticate verifies an access token issued by issuer and reads its user
// and session from the store, so a deleted user or an ended session stops
// at once and an upgrade shows at once, whatever the token says.
func (s *Service) Authenticate(ctx context.Context, raw, issuer string) (*Identity, error) {
	c, err := s.verifier.Verify(raw, issuer)
	if err != nil {
		return nil, err
	}
	u, sess, err := s.store.Identity(ctx, c.Subject, c.SessionID)
	if err == nil && sess.LastUsedAt.Before(c.IssuedAt) {
		// The token is newer than the session as this process has it: it
		// was minted (a refresh, a re-issue) by another process sharing the
		// store, whose change has not reached this cache yet. Read through,
		// so a client sees its own writes on any node.
		s.store.IdentityCache().InvalidateSession(c.SessionID)
		s.store.IdentityCache().InvalidateUser(c.Subject)
		u, sess, err = s.store.Identity(ctx, c.Subject, c.SessionID)
	}
	if errors.Is(err, model.ErrNotFound) {
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

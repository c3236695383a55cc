package accounts

// Device key-pair guests, wire-compatible with Authgear's anonymous users:
// the app keeps a key pair in the device's secure store, fetches a single-use
// challenge, and sends a JWT signed with the private key to the token
// endpoint. The first request registers the public key and creates a guest;
// later requests sign the same guest in again. Unlike Authgear, the first
// request must also prove possession of the key it registers.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Wire constants shared with Authgear's server and SDKs.
const (
	// GrantAnonymousRequest is the token endpoint grant_type.
	GrantAnonymousRequest = "urn:authgear:params:oauth:grant-type:anonymous-request"
	// PurposeAnonymousRequest is the challenge purpose for this grant.
	PurposeAnonymousRequest = "anonymous_request"
	// AnonymousRequestType is the JWT header `typ`.
	AnonymousRequestType = "vnd.authgear.anonymous-request"
	// ActionAuth signs in (creating the guest on first use).
	ActionAuth = "auth"
	// ActionPromote is Authgear's promotion action, refused here: guests
	// upgrade through the user update API instead.
	ActionPromote = "promote"
)

const (
	// ChallengeLifetime is how long a challenge can be used (Authgear: 5m).
	ChallengeLifetime = 5 * time.Minute
	// MaxRequestLifetime caps exp - iat of a request JWT, so a captured JWT
	// is useless soon even if its challenge were somehow still open. (The
	// JWT's size is bounded by tokens.MaxTokenSize, 8 KiB: an RSA-4096 JWK
	// in the header is about 1 KiB.)
	MaxRequestLifetime = 5 * time.Minute
	// RSA keys above this size are refused: they only make verification
	// slower for everyone.
	maxRSABits = 4096
	minRSABits = 2048
)

// kidFormat is Authgear's key id format.
var kidFormat = regexp.MustCompile(`^[-\w]{8,64}$`)

// Challenge is an issued challenge.
type Challenge struct {
	Token     string
	ExpiresAt time.Time
}

var challengeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// ChallengeLimits bound challenge issuance: each challenge is a store
// write. A zero Limit is no limit.
type ChallengeLimits struct {
	// PerIP is a token bucket per client IP key; Global one for the site.
	PerIP  Limit
	Global Limit
}

// NewChallenge issues a single-use challenge for purpose, valid for
// ChallengeLifetime. Only anonymous_request is supported. Issuance is
// throttled per client IP, then for the whole site.
func (s *Service) NewChallenge(ctx context.Context, purpose, clientIP string) (*Challenge, error) {
	switch purpose {
	case PurposeAnonymousRequest:
	case "biometric_request", "app2app_request":
		return nil, refuse(CodeInvalidRequest, "The challenge purpose %q is not supported.", purpose)
	default:
		return nil, refuse(CodeInvalidRequest, "Unknown challenge purpose %q.", purpose)
	}
	if wait := s.byIPChallenge.Take(clientIP); wait > 0 {
		return nil, s.throttled(LimitIP, wait)
	}
	if wait := s.challengeAll.Take(""); wait > 0 {
		return nil, s.throttled(LimitGlobal, wait)
	}
	b := make([]byte, 20) // 160 bits, 32 base32 characters as in Authgear
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	c := model.Challenge{Purpose: purpose, CreatedAt: now, ExpiresAt: now.Add(ChallengeLifetime)}
	token := challengeEncoding.EncodeToString(b)
	if err := s.store.PutChallenge(ctx, token, c); err != nil {
		return nil, err
	}
	return &Challenge{Token: token, ExpiresAt: c.ExpiresAt}, nil
}

// ErrNotAGuest is wrapped in the invalid_grant answer for a device key whose
// user has set a password: the key is no longer a credential. (A name-only
// upgrade keeps the key: it is still the user's only way to sign in.)
var ErrNotAGuest = errors.New("device user is no longer a guest")

func invalidGrant(format string, args ...any) error {
	return refuse(CodeInvalidGrant, format, args...)
}

// notGuestError is invalid_grant with ErrNotAGuest in its chain.
type notGuestError struct{ err *Error }

func (e notGuestError) Error() string   { return e.err.Error() }
func (e notGuestError) Unwrap() []error { return []error{e.err, ErrNotAGuest} }

var errBadChallenge = &Error{Code: CodeInvalidGrant, Description: "The challenge is unknown, expired or already used; request a new one."}

// DeviceResult is the outcome of the key-pair grant.
type DeviceResult struct {
	*Issued
	// Created is true when this request registered the key and created the
	// guest, false when it signed an existing guest in again.
	Created bool
}

// deviceRules are the rules of request JWTs for tokens.VerifyJWT, the one
// verifier of access tokens and device JWTs alike: the key pins the
// algorithm (RS256 or ES256), and exp - iat is capped, so a captured JWT
// is useless soon even if its challenge were somehow still open.
func (s *Service) deviceRules() *tokens.Rules {
	return &tokens.Rules{
		Typ:         AnonymousRequestType,
		Algs:        []jwa.SignatureAlgorithm{jwa.RS256, jwa.ES256},
		Skew:        s.cfg.Skew,
		MaxLifetime: MaxRequestLifetime,
	}
}

// requestClaims is the JWT payload; tokens.VerifyJWT checks exp and iat.
type requestClaims struct {
	tokens.RegisteredClaims
	Challenge string `json:"challenge"`
	Action    string `json:"action"`
}

// deviceKeys is the KeySource of one request JWT: a known kid's stored
// key only (a header jwk is then ignored, so nobody can replace a
// device's key), else the public key the header's jwk carries, which the
// request registers if it succeeds.
type deviceKeys struct {
	ctx context.Context
	s   *Service
	// set by VerificationKey: the stored device (nil for a first request)
	// and the key
	dev *model.Device
	kid string
	key tokens.Key
}

func (d *deviceKeys) VerificationKey(kid string, alg jwa.SignatureAlgorithm, header []byte) (tokens.Key, error) {
	if !kidFormat.MatchString(kid) {
		return tokens.Key{}, invalidGrant("The JWT header kid must be 8 to 64 characters of letters, digits, '_' and '-'.")
	}
	dev, err := d.s.store.GetDevice(d.ctx, kid)
	var key tokens.Key
	switch {
	case err == nil:
		if key, err = storedDeviceKey(dev); err != nil {
			return tokens.Key{}, err
		}
	case errors.Is(err, model.ErrNotFound):
		dev = nil
		if key.Public, err = newDeviceKey(header, kid, alg); err != nil {
			return tokens.Key{}, err
		}
		key.Alg = alg
	default:
		return tokens.Key{}, err
	}
	d.dev, d.kid, d.key = dev, kid, key
	return key, nil
}

// deviceRefusal turns a refusal of tokens.VerifyJWT into invalid_grant;
// other errors (the key source's own, a store outage) pass as they are.
func deviceRefusal(err error) error {
	var inv *tokens.InvalidError
	switch {
	case !errors.As(err, &inv):
		return err
	case inv.Detail != "":
		return invalidGrant("The JWT %s.", inv.Detail)
	}
	return invalidGrant("The JWT is refused (%s).", inv.Reason)
}

// AnonymousRequest is the key-pair grant. raw is the request JWT. Every
// refusal is an *Error (invalid_grant, or invalid_request for `promote`);
// nothing is stored unless the JWT verifies and its challenge is consumed.
func (s *Service) AnonymousRequest(ctx context.Context, issuer, clientID, clientIP, raw string) (*DeviceResult, error) {
	// The event's device_kid is the created user's.
	build := func(r storage.TxResult) []events.Event {
		if len(r.Created) == 0 {
			return nil
		}
		u := r.Created[0]
		return []events.Event{{Type: events.GuestCreated, UserID: u.ID, ClientID: clientID, Data: map[string]any{"via": "keypair", "device_kid": u.DeviceKID}}}
	}
	p := s.withEvents(build)
	res, err := s.anonymousRequest(ctx, issuer, clientID, clientIP, raw, p.tx())
	if err == nil && res.Created {
		s.observeAll(ctx, p.stored(storage.TxResult{Created: []model.User{*res.User}}))
	}
	return res, err
}

// anonymousRequest is AnonymousRequest; a guest it creates is stored with
// ev's events.
func (s *Service) anonymousRequest(ctx context.Context, issuer, clientID, clientIP, raw string, ev storage.Events) (*DeviceResult, error) {
	now := s.now().UTC()
	keys := &deviceKeys{ctx: ctx, s: s}
	var cl requestClaims
	if err := tokens.VerifyJWT(raw, s.deviceRules(), now, keys, &cl); err != nil {
		return nil, deviceRefusal(err)
	}
	dev, kid, key := keys.dev, keys.kid, keys.key
	if cl.Challenge == "" {
		return nil, invalidGrant("The JWT payload needs a challenge.")
	}
	switch cl.Action {
	case ActionAuth:
	case ActionPromote:
		return nil, refuse(CodeInvalidRequest, "The action %q is not supported: upgrade the guest with POST /api/update-user and its access token.", ActionPromote)
	default:
		return nil, invalidGrant("The JWT action must be %q.", ActionAuth)
	}

	c, err := s.store.ConsumeChallenge(ctx, cl.Challenge, now)
	if errors.Is(err, model.ErrNotFound) {
		return nil, errBadChallenge
	}
	if err != nil {
		return nil, err
	}
	if c.Purpose != PurposeAnonymousRequest || !now.Before(c.ExpiresAt) {
		return nil, errBadChallenge
	}

	if dev == nil {
		if err := s.admitGuest(ctx, clientIP); err != nil {
			return nil, err
		}
		issued, err := s.registerDevice(ctx, issuer, clientID, kid, key, now, ev)
		if !errors.Is(err, model.ErrExists) {
			if err != nil {
				return nil, err
			}
			return &DeviceResult{Issued: issued, Created: true}, nil
		}
		// Another request registered this kid meanwhile: the same key (a
		// retry racing itself) signs in to that guest; another key is refused.
		if dev, err = s.store.GetDevice(ctx, kid); err != nil {
			return nil, err
		}
		if stored, err := storedDeviceKey(dev); err != nil || stored.Alg != key.Alg || !sameKey(stored.Public, key.Public) {
			return nil, invalidGrant("The key id is already registered with another key.")
		}
	}
	issued, err := s.deviceSignIn(ctx, issuer, clientID, dev, now)
	if err != nil {
		return nil, err
	}
	return &DeviceResult{Issued: issued}, nil
}

// registerDevice creates a guest bound to the verified key.
func (s *Service) registerDevice(ctx context.Context, issuer, clientID, kid string, key tokens.Key, now time.Time, ev storage.Events) (*Issued, error) {
	k, err := jwk.FromRaw(key.Public)
	if err != nil {
		return nil, err
	}
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		return nil, err
	}
	if err := k.Set(jwk.AlgorithmKey, key.Alg); err != nil {
		return nil, err
	}
	buf, err := json.Marshal(k)
	if err != nil {
		return nil, err
	}
	return s.createGuest(ctx, issuer, clientID, &model.Device{KID: kid, JWK: buf, CreatedAt: now}, ev)
}

// deviceSignIn starts a new session for the device's guest.
func (s *Service) deviceSignIn(ctx context.Context, issuer, clientID string, dev *model.Device, now time.Time) (*Issued, error) {
	u, err := s.store.GetUser(ctx, dev.UserID)
	if errors.Is(err, model.ErrNotFound) {
		return nil, invalidGrant("The user of this device key no longer exists.")
	}
	if err != nil {
		return nil, err
	}
	if !u.Ephemeral() {
		return nil, notGuestError{&Error{Code: CodeInvalidGrant, Description: "This device's user has signed up: sign in with the username and password instead."}}
	}
	issued, err := s.startSession(ctx, issuer, clientID, u, now)
	if errors.Is(err, model.ErrNotFound) {
		return nil, invalidGrant("The user of this device key no longer exists.")
	}
	return issued, err
}

// storedDeviceKey reads a registered key with the algorithm it was
// registered with: tokens.VerifyJWT refuses a JWT naming another one, so a
// key can never be used with another algorithm.
func storedDeviceKey(dev *model.Device) (tokens.Key, error) {
	k, err := jwk.ParseKey(dev.JWK)
	if err != nil {
		return tokens.Key{}, fmt.Errorf("device %s: stored key: %w", dev.KID, err)
	}
	var raw any
	if err := k.Raw(&raw); err != nil {
		return tokens.Key{}, fmt.Errorf("device %s: stored key: %w", dev.KID, err)
	}
	return tokens.Key{Alg: jwa.SignatureAlgorithm(k.Algorithm().String()), Public: raw}, nil
}

// newDeviceKey checks the public key a first request carries in its
// header (raw, the jwk member's JSON; nil when there is none).
func newDeviceKey(raw []byte, kid string, alg jwa.SignatureAlgorithm) (crypto.PublicKey, error) {
	if raw == nil {
		return nil, invalidGrant("Unknown key id: the first request of a device must carry its public key in the JWT header jwk.")
	}
	k, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, invalidGrant("The JWT header jwk is not a JWK.")
	}
	if k.KeyID() != "" && k.KeyID() != kid {
		return nil, invalidGrant("The jwk kid must equal the JWT header kid.")
	}
	if a := k.Algorithm().String(); a != "" && a != alg.String() {
		return nil, invalidGrant("The jwk alg must equal the JWT header alg.")
	}
	var pub any
	if err := k.Raw(&pub); err != nil {
		return nil, invalidGrant("The jwk is not a usable key.")
	}
	switch pub := pub.(type) {
	case *rsa.PublicKey:
		if alg != jwa.RS256 {
			break
		}
		if n := pub.N.BitLen(); n < minRSABits || n > maxRSABits {
			return nil, invalidGrant("The RSA key must have %d to %d bits.", minRSABits, maxRSABits)
		}
		return pub, nil
	case *ecdsa.PublicKey:
		if alg != jwa.ES256 {
			break
		}
		if pub.Curve != elliptic.P256() {
			return nil, invalidGrant("The EC key must be on the P-256 curve.")
		}
		if _, err := pub.ECDH(); err != nil { // rejects points not on the curve
			return nil, invalidGrant("The EC key is not a valid P-256 point.")
		}
		return pub, nil
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
		return nil, invalidGrant("The jwk must be a public key: never send the private key.")
	}
	return nil, invalidGrant("The jwk key type does not match the JWT alg %s.", alg)
}

func sameKey(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

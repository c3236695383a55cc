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
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
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
	// is useless soon even if its challenge were somehow still open.
	MaxRequestLifetime = 5 * time.Minute
	// maxRequestSize bounds the JWT before any parsing (an RSA-4096 JWK in
	// the header is about 1 KiB).
	maxRequestSize = 8 << 10
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
		return nil, &ThrottledError{Limit: LimitIP, RetryAfter: wait}
	}
	if wait := s.challengeAll.Take(""); wait > 0 {
		return nil, &ThrottledError{Limit: LimitGlobal, RetryAfter: wait}
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

// requestClaims is the JWT payload.
type requestClaims struct {
	IssuedAt  *int64 `json:"iat"`
	ExpiresAt *int64 `json:"exp"`
	Challenge string `json:"challenge"`
	Action    string `json:"action"`
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
	p := withEvents(s.cfg.Stager, build)
	res, err := s.anonymousRequest(ctx, issuer, clientID, clientIP, raw, p.tx())
	if err == nil && res.Created {
		s.observeAll(ctx, p.stored(storage.TxResult{Created: []model.User{*res.User}}))
	}
	return res, err
}

// anonymousRequest is AnonymousRequest; a guest it creates is stored with
// ev's events.
func (s *Service) anonymousRequest(ctx context.Context, issuer, clientID, clientIP, raw string, ev storage.Events) (*DeviceResult, error) {
	if len(raw) > maxRequestSize || strings.Count(raw, ".") != 2 {
		return nil, invalidGrant("The jwt parameter is not a compact JWS.")
	}
	msg, err := jws.Parse([]byte(raw), jws.WithCompact())
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, invalidGrant("The jwt parameter is not a valid JWS.")
	}
	h := msg.Signatures()[0].ProtectedHeaders()
	if h.Type() != AnonymousRequestType {
		return nil, invalidGrant("The JWT header typ must be %q.", AnonymousRequestType)
	}
	alg := h.Algorithm()
	if alg != jwa.RS256 && alg != jwa.ES256 {
		return nil, invalidGrant("The JWT header alg must be RS256 or ES256.")
	}
	// crit and b64 change how the signature is computed; nothing here needs them.
	if _, ok := h.Get("b64"); ok || len(h.Critical()) > 0 {
		return nil, invalidGrant("The JWT header must not use crit or b64.")
	}
	kid := h.KeyID()
	if !kidFormat.MatchString(kid) {
		return nil, invalidGrant("The JWT header kid must be 8 to 64 characters of letters, digits, '_' and '-'.")
	}

	// A known kid is checked against its stored key only; a header jwk is
	// then ignored, so nobody can replace a device's key.
	dev, err := s.store.GetDevice(ctx, kid)
	var key crypto.PublicKey
	switch {
	case err == nil:
		if key, err = storedDeviceKey(dev, alg); err != nil {
			return nil, err
		}
	case errors.Is(err, model.ErrNotFound):
		dev = nil
		if key, err = newDeviceKey(h.JWK(), kid, alg); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	payload, err := jws.Verify([]byte(raw), jws.WithKey(alg, key), jws.WithCompact())
	if err != nil {
		return nil, invalidGrant("The JWT signature does not verify with the device key.")
	}

	now := s.now().UTC()
	var cl requestClaims
	if err := json.Unmarshal(payload, &cl); err != nil || cl.IssuedAt == nil || cl.ExpiresAt == nil || cl.Challenge == "" {
		return nil, invalidGrant("The JWT payload needs integer iat and exp, and a challenge.")
	}
	iat, exp, skew := time.Unix(*cl.IssuedAt, 0), time.Unix(*cl.ExpiresAt, 0), s.cfg.Skew
	switch {
	case !exp.After(iat) || exp.Sub(iat) > MaxRequestLifetime:
		return nil, invalidGrant("The JWT exp must be after iat and at most %s later.", MaxRequestLifetime)
	case !now.Before(exp.Add(skew)):
		return nil, invalidGrant("The JWT has expired.")
	case iat.After(now.Add(skew)):
		return nil, invalidGrant("The JWT iat is in the future.")
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
		issued, err := s.registerDevice(ctx, issuer, clientID, kid, alg, key, now, ev)
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
		if stored, err := storedDeviceKey(dev, alg); err != nil || !sameKey(stored, key) {
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
func (s *Service) registerDevice(ctx context.Context, issuer, clientID, kid string, alg jwa.SignatureAlgorithm, key crypto.PublicKey, now time.Time, ev storage.Events) (*Issued, error) {
	k, err := jwk.FromRaw(key)
	if err != nil {
		return nil, err
	}
	if err := k.Set(jwk.KeyIDKey, kid); err != nil {
		return nil, err
	}
	if err := k.Set(jwk.AlgorithmKey, alg); err != nil {
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

// storedDeviceKey reads a registered key; alg must be the one it was
// registered with, so a key can never be used with another algorithm.
func storedDeviceKey(dev *model.Device, alg jwa.SignatureAlgorithm) (crypto.PublicKey, error) {
	k, err := jwk.ParseKey(dev.JWK)
	if err != nil {
		return nil, fmt.Errorf("device %s: stored key: %w", dev.KID, err)
	}
	if k.Algorithm().String() != alg.String() {
		return nil, invalidGrant("The JWT alg must be %s, the algorithm this device key was registered with.", k.Algorithm())
	}
	var raw any
	if err := k.Raw(&raw); err != nil {
		return nil, fmt.Errorf("device %s: stored key: %w", dev.KID, err)
	}
	return raw, nil
}

// newDeviceKey checks the public key a first request carries in its header.
func newDeviceKey(k jwk.Key, kid string, alg jwa.SignatureAlgorithm) (crypto.PublicKey, error) {
	if k == nil {
		return nil, invalidGrant("Unknown key id: the first request of a device must carry its public key in the JWT header jwk.")
	}
	if k.KeyID() != "" && k.KeyID() != kid {
		return nil, invalidGrant("The jwk kid must equal the JWT header kid.")
	}
	if a := k.Algorithm().String(); a != "" && a != alg.String() {
		return nil, invalidGrant("The jwk alg must equal the JWT header alg.")
	}
	var raw any
	if err := k.Raw(&raw); err != nil {
		return nil, invalidGrant("The jwk is not a usable key.")
	}
	switch pub := raw.(type) {
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

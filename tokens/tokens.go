package tokens

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

var b64 = base64.RawURLEncoding

// JOSE "typ" values: access tokens are RFC 9068 JWTs, so an ID token can
// never be replayed as an access token.
const (
	TypeAccess = "at+jwt"
	TypeID     = "JWT"
)

// MaxTokenSize bounds what the verifier will even parse.
const MaxTokenSize = 8 << 10

// Subject is who a token set is for.
type Subject struct {
	UserID    string
	Name      string
	Tag       string
	Anonymous bool
	SessionID string
	AuthTime  time.Time
}

// Grant describes one token issuance.
type Grant struct {
	Alg       jwa.SignatureAlgorithm
	Issuer    string
	ClientID  string
	Scope     string
	Now       time.Time
	AccessTTL time.Duration
	IDTTL     time.Duration
}

// Minted is a signed access and ID token pair.
type Minted struct {
	AccessToken string
	IDToken     string
	// ExpiresIn is the access token's exp - iat, in seconds.
	ExpiresIn int64
	JTI       string
}

// accessClaims and idClaims are the JSON payloads Mint signs. Times are
// NumericDate (seconds); aud is always an array.
type accessClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  []string `json:"aud"`
	Expires   int64    `json:"exp"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf"`
	JTI       string   `json:"jti"`
	ClientID  string   `json:"client_id"`
	SessionID string   `json:"sid"`
	Name      string   `json:"name"`
	Tag       string   `json:"tag"`
	Anonymous bool     `json:"is_anonymous"`
	Scope     string   `json:"scope"`
}

type idClaims struct {
	Issuer            string   `json:"iss"`
	Subject           string   `json:"sub"`
	Audience          []string `json:"aud"`
	Expires           int64    `json:"exp"`
	IssuedAt          int64    `json:"iat"`
	AuthTime          int64    `json:"auth_time"`
	SessionID         string   `json:"sid"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Tag               string   `json:"tag"`
	Anonymous         bool     `json:"is_anonymous"`
}

// Mint signs an access token and an ID token for sub.
func (k *Keyring) Mint(g Grant, sub Subject) (*Minted, error) {
	sk, err := k.signer(g.Alg)
	if err != nil {
		return nil, err
	}
	iat := g.Now.Truncate(time.Second)
	accessExp := iat.Add(g.AccessTTL.Round(time.Second))
	jti := uuid.NewString()
	aud := []string{g.ClientID}
	access, err := sk.signCompact(TypeAccess, &accessClaims{
		Issuer: g.Issuer, Subject: sub.UserID, Audience: aud,
		Expires: accessExp.Unix(), IssuedAt: iat.Unix(), NotBefore: iat.Unix(), JTI: jti,
		ClientID: g.ClientID, SessionID: sub.SessionID, Name: sub.Name, Tag: sub.Tag,
		Anonymous: sub.Anonymous, Scope: g.Scope,
	})
	if err != nil {
		return nil, err
	}
	id, err := sk.signCompact(TypeID, &idClaims{
		Issuer: g.Issuer, Subject: sub.UserID, Audience: aud,
		Expires: iat.Add(g.IDTTL.Round(time.Second)).Unix(), IssuedAt: iat.Unix(), AuthTime: sub.AuthTime.Unix(),
		SessionID: sub.SessionID, Name: sub.Name, PreferredUsername: sub.Name, Tag: sub.Tag, Anonymous: sub.Anonymous,
	})
	if err != nil {
		return nil, err
	}
	return &Minted{AccessToken: access, IDToken: id, ExpiresIn: accessExp.Unix() - iat.Unix(), JTI: jti}, nil
}

// signCompact makes the JWS compact serialization (RFC 7515 §7.1) of
// claims with the protected header {"alg","kid","typ"}, signed with the
// standard library: the tokens a JOSE library makes, without its generic
// header and claim maps on the guest-creation path.
func (sk *signingKey) signCompact(typ string, claims any) (string, error) {
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		KID string `json:"kid"`
		Typ string `json:"typ"`
	}{sk.alg.String(), sk.kid, typ})
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	h := b64.EncodedLen(len(hdr))
	n := h + 1 + b64.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+b64.EncodedLen(512))
	b64.Encode(buf, hdr)
	buf[h] = '.'
	b64.Encode(buf[h+1:], payload)
	sig, err := sk.rawSign(buf)
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	buf = append(buf, '.')
	buf = b64.AppendEncode(buf, sig)
	return string(buf), nil
}

// rawSign signs a JWS signing input as sk.alg prescribes (RFC 7518 §3.3
// and §3.4, ES256 as the fixed-size R||S; RFC 8037 for EdDSA).
func (sk *signingKey) rawSign(input []byte) ([]byte, error) {
	switch key := sk.raw.(type) {
	case *rsa.PrivateKey:
		if sk.alg == jwa.RS256 {
			h := sha256.Sum256(input)
			return rsa.SignPKCS1v15(nil, key, crypto.SHA256, h[:])
		}
	case *ecdsa.PrivateKey:
		if sk.alg == jwa.ES256 && key.Curve == elliptic.P256() {
			h := sha256.Sum256(input)
			r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
			if err != nil {
				return nil, err
			}
			out := make([]byte, 64)
			r.FillBytes(out[:32])
			s.FillBytes(out[32:])
			return out, nil
		}
	case ed25519.PrivateKey:
		if sk.alg == jwa.EdDSA {
			return ed25519.Sign(key, input), nil
		}
	}
	return nil, fmt.Errorf("a %T key cannot sign %s", sk.raw, sk.alg)
}

// AccessClaims are the verified claims of an access token. Values returned
// by the verifier are shared through its cache: do not modify them.
type AccessClaims struct {
	Issuer    string
	Audience  []string
	Subject   string
	ClientID  string
	SessionID string
	Name      string
	Tag       string
	Scope     string
	JTI       string
	Anonymous bool
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// InvalidError says why a token was refused. Reason is a short fixed word
// (for logs and metrics); it never contains token material.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "invalid access token: " + e.Reason }

// Reasons a token is refused.
const (
	ReasonMalformed = "malformed"
	ReasonSignature = "bad_signature"
	ReasonExpired   = "expired"
	ReasonIssuer    = "wrong_issuer"
	ReasonAudience  = "wrong_audience"
	ReasonClaims    = "bad_claims"
)

func invalid(reason string) error { return &InvalidError{Reason: reason} }

// Verifier checks access tokens against a Keyring.
type Verifier struct {
	Keys *Keyring
	// Skew is the clock skew tolerated on exp and nbf.
	Skew time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Cache, when set, remembers verified tokens until they expire.
	Cache *Cache
	// Audiences are the client ids whose tokens are accepted: a token's
	// aud must name one of them. With none, no token is accepted.
	Audiences []string
}

// audienceOK reports whether aud names one of the accepted clients.
func (v *Verifier) audienceOK(aud []string) bool {
	for _, a := range aud {
		if slices.Contains(v.Audiences, a) {
			return true
		}
	}
	return false
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Verify checks raw as an access token issued by issuer: signature with the
// algorithm pinned to the key named by kid, typ, iss, aud (one of
// v.Audiences), exp and nbf.
func (v *Verifier) Verify(raw, issuer string) (*AccessClaims, error) {
	now := v.now()
	if v.Cache != nil {
		if c, ok := v.Cache.Get(raw); ok {
			if c.Issuer != issuer {
				return nil, invalid(ReasonIssuer)
			}
			if !v.audienceOK(c.Audience) {
				return nil, invalid(ReasonAudience)
			}
			if !now.Before(c.ExpiresAt.Add(v.Skew)) {
				return nil, invalid(ReasonExpired)
			}
			return c, nil
		}
	}
	if len(raw) > MaxTokenSize || strings.Count(raw, ".") != 2 {
		return nil, invalid(ReasonMalformed)
	}
	st := v.Keys.state.Load()
	provider := jws.KeyProviderFunc(func(_ context.Context, sink jws.KeySink, sig *jws.Signature, _ *jws.Message) error {
		h := sig.ProtectedHeaders()
		key, ok := st.verify[h.KeyID()]
		if !ok { // added by another process sharing the store, maybe
			key, ok = v.Keys.lookup(h.KeyID())
		}
		// The key decides the algorithm; a token naming another one (none,
		// HS256 with our public key, ...) is refused before any crypto.
		if !ok || h.Algorithm() != key.alg || h.Type() != TypeAccess || len(h.Critical()) > 0 {
			return errKeyRefused
		}
		sink.Key(key.alg, key.raw)
		return nil
	})
	tok, err := jwt.ParseString(raw,
		jwt.WithKeyProvider(provider),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(v.Skew),
		jwt.WithIssuer(issuer),
	)
	if err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenExpired()):
			return nil, invalid(ReasonExpired)
		case errors.Is(err, jwt.ErrInvalidIssuer()):
			return nil, invalid(ReasonIssuer)
		case errors.Is(err, jwt.ErrTokenNotYetValid()), errors.Is(err, jwt.ErrInvalidIssuedAt()):
			return nil, invalid(ReasonClaims)
		case errors.Is(err, errKeyRefused), jws.IsVerificationError(err):
			return nil, invalid(ReasonSignature)
		}
		return nil, invalid(ReasonMalformed)
	}
	c := &AccessClaims{
		Issuer:    tok.Issuer(),
		Audience:  tok.Audience(),
		Subject:   tok.Subject(),
		JTI:       tok.JwtID(),
		IssuedAt:  tok.IssuedAt(),
		ExpiresAt: tok.Expiration(),
	}
	priv := tok.PrivateClaims()
	var ok1, ok2, ok3, ok4 bool
	c.SessionID, ok1 = priv["sid"].(string)
	c.Name, ok2 = priv["name"].(string)
	c.Tag, ok3 = priv["tag"].(string)
	c.Anonymous, ok4 = priv["is_anonymous"].(bool)
	c.ClientID, _ = priv["client_id"].(string)
	c.Scope, _ = priv["scope"].(string)
	if !ok1 || !ok2 || !ok3 || !ok4 || c.Subject == "" || c.SessionID == "" || c.ExpiresAt.IsZero() {
		return nil, invalid(ReasonClaims)
	}
	if !v.audienceOK(c.Audience) {
		return nil, invalid(ReasonAudience)
	}
	if v.Cache != nil {
		v.Cache.Put(raw, c)
	}
	return c, nil
}

var errKeyRefused = errors.New("no acceptable key for this token header")

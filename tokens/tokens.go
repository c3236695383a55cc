package tokens

import (
	"context"
	"encoding/base64"
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

// Mint signs an access token and an ID token for sub.
func (k *Keyring) Mint(g Grant, sub Subject) (*Minted, error) {
	sk, err := k.signer(g.Alg)
	if err != nil {
		return nil, err
	}
	iat := g.Now.Truncate(time.Second)
	accessExp := iat.Add(g.AccessTTL.Round(time.Second))
	jti := uuid.NewString()

	at := jwt.New()
	claims := map[string]any{
		jwt.IssuerKey:     g.Issuer,
		jwt.SubjectKey:    sub.UserID,
		jwt.AudienceKey:   []string{g.ClientID},
		jwt.ExpirationKey: accessExp,
		jwt.IssuedAtKey:   iat,
		jwt.NotBeforeKey:  iat,
		jwt.JwtIDKey:      jti,
		"client_id":       g.ClientID,
		"sid":             sub.SessionID,
		"name":            sub.Name,
		"tag":             sub.Tag,
		"is_anonymous":    sub.Anonymous,
		"scope":           g.Scope,
	}
	for name, v := range claims {
		if err := at.Set(name, v); err != nil {
			return nil, err
		}
	}
	access, err := k.sign(sk, at, TypeAccess)
	if err != nil {
		return nil, err
	}

	idt := jwt.New()
	claims = map[string]any{
		jwt.IssuerKey:        g.Issuer,
		jwt.SubjectKey:       sub.UserID,
		jwt.AudienceKey:      []string{g.ClientID},
		jwt.ExpirationKey:    iat.Add(g.IDTTL.Round(time.Second)),
		jwt.IssuedAtKey:      iat,
		"auth_time":          sub.AuthTime.Unix(),
		"sid":                sub.SessionID,
		"name":               sub.Name,
		"preferred_username": sub.Name,
		"tag":                sub.Tag,
		"is_anonymous":       sub.Anonymous,
	}
	for name, v := range claims {
		if err := idt.Set(name, v); err != nil {
			return nil, err
		}
	}
	id, err := k.sign(sk, idt, TypeID)
	if err != nil {
		return nil, err
	}
	return &Minted{AccessToken: access, IDToken: id, ExpiresIn: accessExp.Unix() - iat.Unix(), JTI: jti}, nil
}

func (k *Keyring) sign(sk *signingKey, t jwt.Token, typ string) (string, error) {
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, sk.kid); err != nil {
		return "", err
	}
	if err := hdr.Set(jws.TypeKey, typ); err != nil {
		return "", err
	}
	out, err := jwt.Sign(t, jwt.WithKey(sk.alg, sk.raw, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("signing token: %w", err)
	}
	return string(out), nil
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
		case errors.Is(err, errKeyRefused), strings.Contains(err.Error(), "verify"):
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

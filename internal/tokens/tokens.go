package tokens

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
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
	// HasPassword: the user can sign in again with a password (Authgear's
	// can_reauthenticate).
	HasPassword bool
	SessionID   string
	AuthTime    time.Time
	// Email and EmailVerified are the user's address, in the ID token of
	// a grant whose scope has "email".
	Email         string
	EmailVerified bool
}

// HasScope reports whether the space-separated scope holds s.
func HasScope(scope, s string) bool {
	for f := range strings.FieldsSeq(scope) {
		if f == s {
			return true
		}
	}
	return false
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
	// Nonce is the authorization request's nonce, for the ID token of an
	// authorization code ("" for the other grants, whose ID tokens carry
	// none: a relying party refuses a nonce it did not send).
	Nonce string
	// Owner is the organization the user belongs to, as Casdoor's SDKs
	// read it from the owner claim ("" leaves the claim out).
	Owner string
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
	// Casdoor's User fields, which its SDKs decode the claims into: the
	// organization and the user id (= sub). Every claim of the token must
	// decode into casdoorsdk.User, so none may be a non-string under a
	// name it types otherwise.
	Owner string `json:"owner,omitempty"`
	ID    string `json:"id"`
}

type idClaims struct {
	Issuer            string   `json:"iss"`
	Subject           string   `json:"sub"`
	Audience          []string `json:"aud"`
	Expires           int64    `json:"exp"`
	IssuedAt          int64    `json:"iat"`
	AuthTime          int64    `json:"auth_time"`
	Nonce             string   `json:"nonce,omitempty"`
	SessionID         string   `json:"sid"`
	Name              string   `json:"name"`
	PreferredUsername string   `json:"preferred_username"`
	Tag               string   `json:"tag"`
	Anonymous         bool     `json:"is_anonymous"`
	Owner             string   `json:"owner,omitempty"`
	ID                string   `json:"id"`
	// The standard email claims, with scope email and an address.
	Email         string `json:"email,omitempty"`
	EmailVerified *bool  `json:"email_verified,omitempty"`
	// Authgear's user claims, which its SDKs read from the ID token and
	// UserInfo: is_verified is whether the user has a verified email
	// address (nobody here has a phone), as Authgear says it.
	AuthgearAnonymous  bool `json:"https://authgear.com/claims/user/is_anonymous"`
	AuthgearVerified   bool `json:"https://authgear.com/claims/user/is_verified"`
	AuthgearCanReauthn bool `json:"https://authgear.com/claims/user/can_reauthenticate"`
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
		Anonymous: sub.Anonymous, Scope: g.Scope, Owner: g.Owner, ID: sub.UserID,
	})
	if err != nil {
		return nil, err
	}
	idc := &idClaims{
		Issuer: g.Issuer, Subject: sub.UserID, Audience: aud,
		Expires: iat.Add(g.IDTTL.Round(time.Second)).Unix(), IssuedAt: iat.Unix(), AuthTime: sub.AuthTime.Unix(), Nonce: g.Nonce,
		SessionID: sub.SessionID, Name: sub.Name, PreferredUsername: sub.Name, Tag: sub.Tag, Anonymous: sub.Anonymous,
		Owner: g.Owner, ID: sub.UserID, AuthgearAnonymous: sub.Anonymous, AuthgearCanReauthn: sub.HasPassword,
		AuthgearVerified: sub.EmailVerified && sub.Email != "",
	}
	if sub.Email != "" && HasScope(g.Scope, "email") {
		v := sub.EmailVerified
		idc.Email, idc.EmailVerified = sub.Email, &v
	}
	id, err := sk.signCompact(TypeID, idc)
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
	hdr, err := sk.header(typ)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	h := len(hdr)
	n := h + 1 + b64.EncodedLen(len(payload))
	buf := make([]byte, n, n+1+b64.EncodedLen(512))
	copy(buf, hdr)
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

// header is the base64url-encoded protected header {"alg","kid","typ"} of
// a token of type typ signed by sk, encoded once per key and type.
func (sk *signingKey) header(typ string) ([]byte, error) {
	if h, ok := sk.headers.Load(typ); ok {
		return h.([]byte), nil
	}
	hdr, err := json.Marshal(struct {
		Alg string `json:"alg"`
		KID string `json:"kid"`
		Typ string `json:"typ"`
	}{sk.alg.String(), sk.kid, typ})
	if err != nil {
		return nil, err
	}
	enc := b64.AppendEncode(nil, hdr)
	sk.headers.Store(typ, enc)
	return enc, nil
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
// (for logs and metrics); Detail, when set, says which rule refused it in
// a few fixed words (for an error description). Neither ever contains
// token material.
type InvalidError struct {
	Reason string
	Detail string
}

func (e *InvalidError) Error() string {
	if e.Detail != "" {
		return "invalid token: " + e.Reason + " (" + e.Detail + ")"
	}
	return "invalid access token: " + e.Reason
}

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

func invalidBecause(reason, detail string) error {
	return &InvalidError{Reason: reason, Detail: detail}
}

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
//
// On a cache miss it verifies raw with VerifyJWT, the routine device JWTs
// use too, with the keyring as the key source: the token's "alg" is only
// compared with the algorithm of the key its "kid" names, never used to
// choose one; "crit", and duplicate or case-folded JSON member names in
// header or payload, are refused. A hit re-checks iss, aud and exp only.
func (v *Verifier) Verify(raw, issuer string) (*AccessClaims, error) {
	now := v.now()
	var key [sha256.Size]byte
	if v.Cache != nil {
		key = cacheKey(raw)
		if c, ok := v.Cache.get(key); ok {
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
	c, err := v.parse(raw, issuer, now)
	if err != nil {
		return nil, err
	}
	if v.Cache != nil {
		v.Cache.put(key, c)
	}
	return c, nil
}

// accessRules are the rules of access tokens, but for the skew.
var accessRules = Rules{Typ: TypeAccess, Algs: Algorithms}

// accessPayload is an access token's payload as Verify reads it. Times
// are NumericDate, which may carry a fraction.
type accessPayload struct {
	RegisteredClaims
	Issuer    string         `json:"iss"`
	Subject   string         `json:"sub"`
	Audience  Audience       `json:"aud"`
	JTI       string         `json:"jti"`
	ClientID  string         `json:"client_id"`
	SessionID string         `json:"sid"`
	Name      Member[string] `json:"name"`
	Tag       Member[string] `json:"tag"`
	Anonymous Member[bool]   `json:"is_anonymous"`
	Scope     string         `json:"scope"`
	// Casdoor's copies of other claims, skipped rather than left unknown:
	// an unknown member costs a miss two allocations.
	Owner skipped `json:"owner"`
	ID    skipped `json:"id"`
}

// skipped is a member read past without decoding it.
type skipped struct{}

// UnmarshalJSONFrom skips the value.
func (skipped) UnmarshalJSONFrom(dec *jsontext.Decoder) error { return dec.SkipValue() }

// VerificationKey makes the keyring the KeySource of access tokens: the
// stored key kid names, whatever else the header says.
func (k *Keyring) VerificationKey(kid string, _ jwa.SignatureAlgorithm, _ []byte) (Key, error) {
	key, ok := k.lookup(kid)
	if !ok {
		return Key{}, invalidBecause(ReasonSignature, "unknown kid")
	}
	return key, nil
}

// parse verifies raw without the cache.
func (v *Verifier) parse(raw, issuer string, now time.Time) (*AccessClaims, error) {
	rules := accessRules
	rules.Skew = v.Skew
	var p accessPayload
	if err := VerifyJWT(raw, &rules, now, v.Keys, &p); err != nil {
		return nil, err
	}
	if p.Issuer == "" || p.Issuer != issuer {
		return nil, invalid(ReasonIssuer)
	}
	if !p.Name.Set || !p.Tag.Set || !p.Anonymous.Set || p.Subject == "" || p.SessionID == "" {
		return nil, invalid(ReasonClaims)
	}
	if !v.audienceOK(p.Audience) {
		return nil, invalid(ReasonAudience)
	}
	// Cached claims share the strings every token repeats (issuer, client
	// id, audience) with the verifier; the others are copied into one
	// allocation, so an entry holds one block of strings, not one each.
	strs := [...]string{p.Subject, p.SessionID, p.Name.Value, p.Tag.Value, p.Scope, p.JTI, p.ClientID}
	sharedClient := slices.Index(v.Audiences, p.ClientID)
	if sharedClient >= 0 {
		strs[6] = ""
	}
	pack(strs[:])
	c := &AccessClaims{
		Issuer: issuer, Subject: strs[0], SessionID: strs[1], Name: strs[2], Tag: strs[3], Scope: strs[4], JTI: strs[5],
		ClientID: strs[6], Anonymous: p.Anonymous.Value, ExpiresAt: p.Expires.Time, IssuedAt: p.IssuedAt.Time,
	}
	if sharedClient >= 0 {
		c.ClientID = v.Audiences[sharedClient]
	}
	c.Audience = p.Audience
	if len(p.Audience) == 1 {
		if i := slices.Index(v.Audiences, p.Audience[0]); i >= 0 {
			c.Audience = v.Audiences[i : i+1 : i+1]
		}
	}
	return c, nil
}

// pack copies strs into one allocation and replaces each with its copy.
func pack(strs []string) {
	n := 0
	for _, s := range strs {
		n += len(s)
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range strs {
		b.WriteString(s)
	}
	all := b.String()
	for i, s := range strs {
		strs[i], all = all[:len(s)], all[len(s):]
	}
}

// IDTokenHint is what an ID token given back to the end-session endpoint
// (id_token_hint) says: whom it was issued to and for which session.
type IDTokenHint struct {
	Subject   string
	Audience  []string
	SessionID string
}

// idHintPayload is an ID token's payload as VerifyIDTokenHint reads it.
type idHintPayload struct {
	RegisteredClaims
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  Audience `json:"aud"`
	SessionID string   `json:"sid"`
}

// VerifyIDTokenHint checks raw as an ID token this keyring signed for
// issuer, as RP-Initiated Logout's id_token_hint: its signature with the
// algorithm pinned to the key its kid names, typ, iss and sub; it may have
// expired (a relying party logs out after its tokens ran out), but a token
// whose key was retired no longer verifies.
func (k *Keyring) VerifyIDTokenHint(raw, issuer string, skew time.Duration, now time.Time) (*IDTokenHint, error) {
	rules := Rules{Typ: TypeID, Algs: Algorithms, Skew: skew, Expired: true}
	var p idHintPayload
	if err := VerifyJWT(raw, &rules, now, k, &p); err != nil {
		return nil, err
	}
	if p.Issuer == "" || p.Issuer != issuer {
		return nil, invalid(ReasonIssuer)
	}
	if p.Subject == "" || len(p.Audience) == 0 {
		return nil, invalid(ReasonClaims)
	}
	return &IDTokenHint{Subject: p.Subject, Audience: p.Audience, SessionID: p.SessionID}, nil
}

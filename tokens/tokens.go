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
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"
	"unsafe"

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
//
// On a cache miss it parses the compact JWS once, into typed claims, and
// checks the signature with the standard library: the token's "alg" is
// only compared with the algorithm of the key its "kid" names, never used
// to choose one. Headers with "crit", and duplicate (or case-folded
// duplicate) JSON members in header or payload, are refused.
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
	c, err := v.parse(raw, issuer, now)
	if err != nil {
		return nil, err
	}
	if v.Cache != nil {
		v.Cache.Put(raw, c)
	}
	return c, nil
}

// jwsHeader is the protected header of a token we accept.
type jwsHeader struct {
	Alg string `json:"alg"`
	KID string `json:"kid"`
	Typ string `json:"typ"`
}

var headerFields = []string{"alg", "kid", "typ", "crit"}

const headerCrit = 1 << 3

// verifyClaims is the payload as the verifier reads it. Times are
// NumericDate, which may carry a fraction.
type verifyClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  audience `json:"aud"`
	Expires   float64  `json:"exp"`
	IssuedAt  float64  `json:"iat"`
	NotBefore float64  `json:"nbf"`
	JTI       string   `json:"jti"`
	ClientID  string   `json:"client_id"`
	SessionID string   `json:"sid"`
	Name      string   `json:"name"`
	Tag       string   `json:"tag"`
	Anonymous bool     `json:"is_anonymous"`
	Scope     string   `json:"scope"`
}

var claimFields = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "sid", "name", "tag", "is_anonymous", "scope"}

const (
	claimIss = 1 << iota
	claimSub
	claimAud
	claimExp
	claimIat
	claimNbf
	_ // jti
	_ // client_id
	claimSid
	claimName
	claimTag
	claimAnon
	// claimsRequired are the members an access token must carry.
	claimsRequired = claimSub | claimExp | claimSid | claimName | claimTag | claimAnon
)

// audience is the "aud" claim: one string or an array of them (RFC 7519 §4.1.3).
type audience []string

func (a *audience) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*a = audience{s}
		return nil
	}
	return json.Unmarshal(data, (*[]string)(a))
}

// parse verifies raw without the cache.
func (v *Verifier) parse(raw, issuer string, now time.Time) (*AccessClaims, error) {
	if len(raw) > MaxTokenSize {
		return nil, invalid(ReasonMalformed)
	}
	// Only the base64url alphabet and the two dots: the decoder would skip
	// CR and LF, letting many strings stand for one token.
	dot1, dot2 := -1, -1
	for i := 0; i < len(raw); i++ {
		switch ch := raw[i]; {
		case ch == '.':
			switch {
			case dot1 < 0:
				dot1 = i
			case dot2 < 0:
				dot2 = i
			default:
				return nil, invalid(ReasonMalformed)
			}
		case 'A' <= ch && ch <= 'Z', 'a' <= ch && ch <= 'z', '0' <= ch && ch <= '9', ch == '-', ch == '_':
		default:
			return nil, invalid(ReasonMalformed)
		}
	}
	if dot2 < 0 {
		return nil, invalid(ReasonMalformed)
	}
	hdrB64, payB64, sigB64 := raw[:dot1], raw[dot1+1:dot2], raw[dot2+1:]
	// One buffer for the three decoded parts.
	hn, pn, sn := strictB64.DecodedLen(len(hdrB64)), strictB64.DecodedLen(len(payB64)), strictB64.DecodedLen(len(sigB64))
	buf := make([]byte, hn+pn+sn)
	hdr, err := decodePart(buf[:0:hn], hdrB64)
	if err != nil {
		return nil, invalid(ReasonMalformed)
	}
	var h jwsHeader
	present, reason := decodeObject(hdr, &h, headerFields)
	if reason != "" {
		return nil, invalid(reason)
	}
	key, ok := v.Keys.state.Load().verify[h.KID]
	if !ok { // added by another process sharing the store, maybe
		key, ok = v.Keys.lookup(h.KID)
	}
	// The key decides the algorithm; a token naming another one (none,
	// HS256 with our public key, ...) is refused before any crypto.
	if !ok || h.Alg != key.alg.String() || h.Typ != TypeAccess || present&headerCrit != 0 {
		return nil, invalid(ReasonSignature)
	}
	sig, err := decodePart(buf[hn+pn:hn+pn:hn+pn+sn], sigB64)
	if err != nil {
		return nil, invalid(ReasonMalformed)
	}
	if !verifySignature(key, raw[:dot2], sig) {
		return nil, invalid(ReasonSignature)
	}
	pay, err := decodePart(buf[hn:hn:hn+pn], payB64)
	if err != nil {
		return nil, invalid(ReasonMalformed)
	}
	var vc verifyClaims
	present, reason = decodeObject(pay, &vc, claimFields)
	if reason != "" {
		return nil, invalid(reason)
	}
	if present&claimIss == 0 || vc.Issuer != issuer {
		return nil, invalid(ReasonIssuer)
	}
	exp, okExp := numericDate(vc.Expires)
	iat, okIat := numericDate(vc.IssuedAt)
	nbf, okNbf := numericDate(vc.NotBefore)
	if !okExp || !okIat || !okNbf || present&claimsRequired != claimsRequired {
		return nil, invalid(ReasonClaims)
	}
	if !now.Before(exp.Add(v.Skew)) {
		return nil, invalid(ReasonExpired)
	}
	if present&claimNbf != 0 && now.Add(v.Skew).Before(nbf) ||
		present&claimIat != 0 && now.Add(v.Skew).Before(iat) {
		return nil, invalid(ReasonClaims)
	}
	if vc.Subject == "" || vc.SessionID == "" {
		return nil, invalid(ReasonClaims)
	}
	if !v.audienceOK(vc.Audience) {
		return nil, invalid(ReasonAudience)
	}
	// Cached claims share the strings every token repeats (issuer, client
	// id, audience) with the verifier instead of holding copies.
	c := &AccessClaims{
		Issuer: issuer, Audience: v.shareAudience(vc.Audience), Subject: vc.Subject, ClientID: v.share(vc.ClientID),
		SessionID: vc.SessionID, Name: vc.Name, Tag: vc.Tag, Scope: vc.Scope, JTI: vc.JTI,
		Anonymous: vc.Anonymous, ExpiresAt: exp,
	}
	if present&claimIat != 0 {
		c.IssuedAt = iat
	}
	return c, nil
}

// share returns the accepted audience equal to s, or s.
func (v *Verifier) share(s string) string {
	if i := slices.Index(v.Audiences, s); i >= 0 {
		return v.Audiences[i]
	}
	return s
}

// shareAudience returns a one-element aud as a sub-slice of v.Audiences.
func (v *Verifier) shareAudience(aud []string) []string {
	if len(aud) == 1 {
		if i := slices.Index(v.Audiences, aud[0]); i >= 0 {
			return v.Audiences[i : i+1 : i+1]
		}
	}
	return aud
}

// strictB64 refuses non-zero padding bits, so one token has one spelling.
var strictB64 = base64.RawURLEncoding.Strict()

func decodePart(dst []byte, s string) ([]byte, error) {
	return strictB64.AppendDecode(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// numericDate converts a NumericDate; values beyond year 9999 (or NaN) are refused.
func numericDate(f float64) (time.Time, bool) {
	if !(f >= -62135596800 && f <= 253402300799) {
		return time.Time{}, false
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)).UTC(), true
}

// decodeObject unmarshals the JSON object data into dst and reports which
// of fields were present (bit i for fields[i]). It refuses, as malformed,
// anything but an object, a member named twice, and a member that matches
// a field only case-insensitively (encoding/json would otherwise fill
// the field from it).
func decodeObject(data []byte, dst any, fields []string) (present uint64, reason string) {
	if len(data) == 0 || data[0] != '{' {
		return 0, ReasonMalformed
	}
	if err := json.Unmarshal(data, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return 0, ReasonClaims
		}
		return 0, ReasonMalformed
	}
	// data is now known to be valid JSON: walk its top-level member names.
	var other [16]string // names outside fields, to catch their duplicates
	nOther := 0
	depth, expectKey := 0, false
	for i := 0; i < len(data); i++ {
		switch ch := data[i]; ch {
		case '"':
			start, escaped := i+1, false
			for i++; data[i] != '"'; i++ {
				if data[i] == '\\' {
					escaped = true
					i++
				}
			}
			if depth != 1 || !expectKey {
				continue
			}
			expectKey = false
			var name string
			if escaped {
				if json.Unmarshal(data[start-1:i+1], &name) != nil {
					return 0, ReasonMalformed
				}
			} else {
				name = unsafe.String(&data[start], i-start)
				if i == start {
					name = ""
				}
			}
			known := false
			for j, f := range fields {
				if name == f {
					if present&(1<<j) != 0 {
						return 0, ReasonMalformed
					}
					present |= 1 << j
					known = true
					break
				}
				if strings.EqualFold(name, f) {
					return 0, ReasonMalformed
				}
			}
			if known {
				continue
			}
			if nOther == len(other) || slices.Contains(other[:nOther], name) {
				return 0, ReasonMalformed
			}
			other[nOther] = name
			nOther++
		case '{', '[':
			depth++
			expectKey = ch == '{' && depth == 1
		case '}', ']':
			depth--
		case ',':
			expectKey = depth == 1
		}
	}
	return present, ""
}

// verifySignature checks sig over input with key, as key.alg prescribes.
func verifySignature(key verifyKey, input string, sig []byte) bool {
	in := unsafe.Slice(unsafe.StringData(input), len(input))
	switch pub := key.raw.(type) {
	case *rsa.PublicKey:
		if key.alg != jwa.RS256 {
			return false
		}
		h := sha256.Sum256(in)
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil
	case *ecdsa.PublicKey:
		if key.alg != jwa.ES256 || pub.Curve != elliptic.P256() || len(sig) != 64 {
			return false
		}
		h := sha256.Sum256(in)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		return ecdsa.Verify(pub, h[:], r, s)
	case ed25519.PublicKey:
		return key.alg == jwa.EdDSA && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, in, sig)
	}
	return false
}

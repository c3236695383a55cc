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
	"math"
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

var headerFields = []string{"alg", "kid", "typ", "crit"}

const (
	headerAlg = iota
	headerKID
	headerTyp
	headerCrit
)

// claimFields are the payload members the verifier reads. Times are
// NumericDate, which may carry a fraction.
var claimFields = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "sid", "name", "tag", "is_anonymous", "scope"}

const (
	claimIss = iota
	claimSub
	claimAud
	claimExp
	claimIat
	claimNbf
	claimJTI
	claimClientID
	claimSid
	claimName
	claimTag
	claimAnon
	claimScope
)

// claimsRequired are the members an access token must carry.
const claimsRequired = 1<<claimSub | 1<<claimExp | 1<<claimSid | 1<<claimName | 1<<claimTag | 1<<claimAnon

// parse verifies raw without the cache.
func (v *Verifier) parse(raw, issuer string, now time.Time) (*AccessClaims, error) {
	if len(raw) > MaxTokenSize {
		return nil, invalid(ReasonMalformed)
	}
	// Only the base64url alphabet and the two dots: the decoder would skip
	// CR and LF, letting many strings stand for one token.
	dot1, dot2 := -1, -1
	for i := 0; i < len(raw); i++ {
		switch compactByte[raw[i]] {
		case 1:
		case 2:
			switch {
			case dot1 < 0:
				dot1 = i
			case dot2 < 0:
				dot2 = i
			default:
				return nil, invalid(ReasonMalformed)
			}
		default:
			return nil, invalid(ReasonMalformed)
		}
	}
	if dot2 < 0 {
		return nil, invalid(ReasonMalformed)
	}
	hdrB64, payB64, sigB64 := raw[:dot1], raw[dot1+1:dot2], raw[dot2+1:]
	// The decoded parts live on the stack (a token is at most 8 KiB); only
	// the strings the claims keep are copied out, in one allocation.
	var buf [MaxTokenSize]byte
	hn, pn, sn := strictB64.DecodedLen(len(hdrB64)), strictB64.DecodedLen(len(payB64)), strictB64.DecodedLen(len(sigB64))
	hdr, err := decodePart(buf[:0:hn], hdrB64)
	if err != nil {
		return nil, invalid(ReasonMalformed)
	}
	hv, present, reason := scanObject(hdr, headerFields)
	if reason != "" {
		return nil, invalid(reason)
	}
	alg, okAlg := jsonString(hv[headerAlg])
	kid, okKID := jsonString(hv[headerKID])
	typ, okTyp := jsonString(hv[headerTyp])
	if !okAlg || !okKID || !okTyp {
		return nil, invalid(ReasonClaims)
	}
	key, ok := v.Keys.state.Load().verify[kid]
	if !ok { // added by another process sharing the store, maybe
		key, ok = v.Keys.lookup(strings.Clone(kid))
	}
	// The key decides the algorithm; a token naming another one (none,
	// HS256 with our public key, ...) is refused before any crypto.
	if !ok || alg != key.alg.String() || typ != TypeAccess || present&(1<<headerCrit) != 0 {
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
	cv, present, reason := scanObject(pay, claimFields)
	if reason != "" {
		return nil, invalid(reason)
	}
	var strs [7]string // iss sub jti client_id sid name tag scope, below
	var okStr [8]bool
	var iss string
	iss, okStr[0] = jsonString(cv[claimIss])
	for i, f := range [...]int{claimSub, claimJTI, claimClientID, claimSid, claimName, claimTag, claimScope} {
		strs[i], okStr[i+1] = jsonString(cv[f])
	}
	audFew, nAud, aud, okAud := jsonStrings(cv[claimAud])
	if aud == nil {
		aud = audFew[:nAud]
	}
	expF, okExpT := jsonNumber(cv[claimExp])
	iatF, okIatT := jsonNumber(cv[claimIat])
	nbfF, okNbfT := jsonNumber(cv[claimNbf])
	anon, okAnon := jsonBool(cv[claimAnon])
	if okStr != [8]bool{true, true, true, true, true, true, true, true} || !okAud || !okExpT || !okIatT || !okNbfT || !okAnon {
		return nil, invalid(ReasonClaims)
	}
	if present&(1<<claimIss) == 0 || iss != issuer {
		return nil, invalid(ReasonIssuer)
	}
	exp, okExp := numericDate(expF)
	iat, okIat := numericDate(iatF)
	nbf, okNbf := numericDate(nbfF)
	if !okExp || !okIat || !okNbf || present&claimsRequired != claimsRequired {
		return nil, invalid(ReasonClaims)
	}
	if !now.Before(exp.Add(v.Skew)) {
		return nil, invalid(ReasonExpired)
	}
	if present&(1<<claimNbf) != 0 && now.Add(v.Skew).Before(nbf) ||
		present&(1<<claimIat) != 0 && now.Add(v.Skew).Before(iat) {
		return nil, invalid(ReasonClaims)
	}
	sub, jti, clientID, sid, name, tag, scope := strs[0], strs[1], strs[2], strs[3], strs[4], strs[5], strs[6]
	if sub == "" || sid == "" {
		return nil, invalid(ReasonClaims)
	}
	if !v.audienceOK(aud) {
		return nil, invalid(ReasonAudience)
	}
	// Cached claims share the strings every token repeats (issuer, client
	// id, audience) with the verifier; the others are copied out of buf
	// into one allocation (no view of buf may reach c, or buf would move to
	// the heap).
	sharedClient := slices.Index(v.Audiences, clientID)
	sharedAud := -1
	if len(aud) == 1 {
		sharedAud = slices.Index(v.Audiences, aud[0])
	}
	n := len(sub) + len(jti) + len(sid) + len(name) + len(tag) + len(scope)
	if sharedClient < 0 {
		n += len(clientID)
	}
	if sharedAud < 0 {
		for _, a := range aud {
			n += len(a)
		}
	}
	p := packer{b: make([]byte, 0, n)}
	c := &AccessClaims{
		Issuer: issuer, Subject: p.add(sub), SessionID: p.add(sid), Name: p.add(name), Tag: p.add(tag),
		Scope: p.add(scope), JTI: p.add(jti), Anonymous: anon, ExpiresAt: exp,
	}
	if sharedClient >= 0 {
		c.ClientID = v.Audiences[sharedClient]
	} else {
		c.ClientID = p.add(clientID)
	}
	if sharedAud >= 0 {
		c.Audience = v.Audiences[sharedAud : sharedAud+1 : sharedAud+1]
	} else {
		c.Audience = make([]string, len(aud))
		for i, a := range aud {
			c.Audience[i] = p.add(a)
		}
	}
	if present&(1<<claimIat) != 0 {
		c.IssuedAt = iat
	}
	return c, nil
}

// packer copies strings into one buffer allocated for all of them.
type packer struct{ b []byte }

func (p *packer) add(s string) string {
	if s == "" {
		return ""
	}
	start := len(p.b)
	p.b = append(p.b, s...)
	return unsafe.String(&p.b[start], len(s))
}

// compactByte classes the bytes of a compact JWS: 1 for the base64url
// alphabet, 2 for '.', 0 for any other.
var compactByte = func() (t [256]byte) {
	for c := range 256 {
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			t[c] = 1
		case c == '.':
			t[c] = 2
		}
	}
	return t
}()

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

// derSignature appends to dst the ASN.1 DER form (SEQUENCE of two
// INTEGERs) of a JWS ES256 signature, the fixed-size R||S of RFC 7518
// §3.4, so that it is checked by ecdsa.VerifyASN1 without big.Int values.
func derSignature(dst, rs []byte) []byte {
	integer := func(b []byte) []byte {
		for len(b) > 1 && b[0] == 0 {
			b = b[1:]
		}
		return b
	}
	r, s := integer(rs[:len(rs)/2]), integer(rs[len(rs)/2:])
	pad := func(b []byte) int { return int(b[0] >> 7) } // a leading 0 keeps it positive
	lr, ls := len(r)+pad(r), len(s)+pad(s)
	dst = append(dst, 0x30, byte(4+lr+ls), 0x02, byte(lr))
	if pad(r) == 1 {
		dst = append(dst, 0)
	}
	dst = append(dst, r...)
	dst = append(dst, 0x02, byte(ls))
	if pad(s) == 1 {
		dst = append(dst, 0)
	}
	return append(dst, s...)
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
		var der [72]byte
		return ecdsa.VerifyASN1(pub, h[:], derSignature(der[:0], sig))
	case ed25519.PublicKey:
		return key.alg == jwa.EdDSA && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, in, sig)
	}
	return false
}

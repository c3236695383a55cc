package tokens

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/lestrrat-go/jwx/v2/jwa"
)

// VerifyJWT is the one verification routine of every JWT guestauth
// accepts: its own access tokens (Verifier) and the request JWTs devices
// sign with their own keys (the key-pair grant). Each kind brings its
// Rules, its KeySource and its claims type; the rest is done here, the
// same way for all:
//
//   - the compact serialization only, at most MaxTokenSize bytes, strict
//     base64url (one token has one spelling);
//   - header and payload read with github.com/go-json-experiment/json:
//     one JSON object each, no duplicate member names at any depth, names
//     matched case-sensitively, and a top-level member whose name differs
//     from one the type reads only in case is refused too (a
//     case-insensitive reader, like encoding/json's, would take it for
//     that member);
//   - typ is Rules.Typ; crit and b64 are refused (they change how a token
//     must be read); alg must be one of Rules.Algs and the algorithm of
//     the key the KeySource returns: a token's alg never chooses one;
//   - the signature is checked with the standard library before the
//     payload is read;
//   - exp is required; exp, iat and nbf are checked against now with
//     Rules.Skew; Rules.MaxLifetime caps exp - iat.
//
// Every refusal is an *InvalidError, except the KeySource's own errors,
// returned as they are. claims must be a pointer to a struct embedding
// RegisteredClaims; the caller checks the claims its kind needs.
func VerifyJWT(raw string, r *Rules, now time.Time, keys KeySource, claims Claims) error {
	dot1, dot2, ok := splitCompact(raw)
	if !ok {
		return errNotCompact
	}
	hdrB64, payB64, sigB64 := raw[:dot1], raw[dot1+1:dot2], raw[dot2+1:]
	hn, pn := strictB64.DecodedLen(len(hdrB64)), strictB64.DecodedLen(len(payB64))
	buf := make([]byte, hn+pn+strictB64.DecodedLen(len(sigB64)))
	hdr, err := strictB64.AppendDecode(buf[:0:hn], []byte(hdrB64))
	if err != nil {
		return errNotCompact
	}
	var h header
	if err := decodeObject(hdr, &h, &h.Unknown, "header"); err != nil {
		return err
	}
	if h.Typ != r.Typ {
		return invalidBecause(ReasonSignature, "header typ must be "+strconv.Quote(r.Typ))
	}
	if h.Crit != nil || h.B64 != nil {
		return invalidBecause(ReasonSignature, "header must not use crit or b64")
	}
	alg, ok := r.alg(h.Alg)
	if !ok {
		return invalidBecause(ReasonSignature, "header alg must be "+r.algNames())
	}
	key, err := keys.VerificationKey(h.KID, alg, h.JWK)
	if err != nil {
		return err
	}
	if key.Alg != alg {
		return invalidBecause(ReasonSignature, "header alg must be "+key.Alg.String()+", the key's algorithm")
	}
	sig, err := strictB64.AppendDecode(buf[hn+pn:hn+pn], []byte(sigB64))
	if err != nil {
		return errNotCompact
	}
	if !verifySignature(key, raw[:dot2], sig) {
		return invalidBecause(ReasonSignature, "signature does not verify")
	}
	pay, err := strictB64.AppendDecode(buf[hn:hn:hn+pn], []byte(payB64))
	if err != nil {
		return errNotCompact
	}
	reg := claims.registered()
	if err := decodeObject(pay, claims, &reg.Unknown, "payload"); err != nil {
		return err
	}
	return r.checkTimes(reg, now)
}

// Key is a public key and the one algorithm it verifies.
type Key struct {
	Alg    jwa.SignatureAlgorithm
	Public crypto.PublicKey
}

// KeySource finds the key that verifies a token.
type KeySource interface {
	// VerificationKey returns the key for a token whose protected header
	// names kid and alg (already one of the Rules' Algs) and, when it has
	// one, jwk: the raw JSON of its "jwk" member (RFC 7515 §4.1.3), nil
	// when absent. An *InvalidError refuses the token; any other error is
	// returned by VerifyJWT as it is (a store outage, say).
	VerificationKey(kid string, alg jwa.SignatureAlgorithm, jwk []byte) (Key, error)
}

// Rules are what one kind of JWT must satisfy besides its signature.
type Rules struct {
	// Typ is the header typ the tokens must carry (never empty: a token
	// of one kind is never accepted as another).
	Typ string
	// Algs are the algorithms the tokens may be signed with.
	Algs []jwa.SignatureAlgorithm
	// Skew is the clock skew tolerated on exp, iat and nbf.
	Skew time.Duration
	// MaxLifetime, when positive, requires iat and exp after iat by at
	// most this.
	MaxLifetime time.Duration
	// Expired accepts a token whose exp has passed (exp is still
	// required): an ID token given back as a logout's id_token_hint.
	Expired bool
}

func (r *Rules) alg(name string) (jwa.SignatureAlgorithm, bool) {
	for _, a := range r.Algs {
		if a.String() == name {
			return a, true
		}
	}
	return "", false
}

func (r *Rules) algNames() string {
	names := make([]string, len(r.Algs))
	for i, a := range r.Algs {
		names[i] = a.String()
	}
	return strings.Join(names, " or ")
}

// checkTimes applies the time rules to a verified payload's claims.
func (r *Rules) checkTimes(c *RegisteredClaims, now time.Time) error {
	exp, iat, nbf := c.Expires, c.IssuedAt, c.NotBefore
	switch {
	case !exp.Set:
		return invalidBecause(ReasonClaims, "exp is required")
	case r.MaxLifetime > 0 && !iat.Set:
		return invalidBecause(ReasonClaims, "iat is required")
	case r.MaxLifetime > 0 && (!exp.Time.After(iat.Time) || exp.Time.Sub(iat.Time) > r.MaxLifetime):
		return invalidBecause(ReasonClaims, fmt.Sprintf("exp must be after iat and at most %s later", r.MaxLifetime))
	case !r.Expired && !now.Before(exp.Time.Add(r.Skew)):
		return invalidBecause(ReasonExpired, "has expired")
	case iat.Set && now.Add(r.Skew).Before(iat.Time):
		return invalidBecause(ReasonClaims, "iat is in the future")
	case nbf.Set && now.Add(r.Skew).Before(nbf.Time):
		return invalidBecause(ReasonClaims, "nbf is in the future")
	}
	return nil
}

// Claims is a payload type for VerifyJWT: a struct embedding
// RegisteredClaims, whose other fields (json tags, matched
// case-sensitively) are the claims its kind reads.
type Claims interface{ registered() *RegisteredClaims }

// RegisteredClaims are the time claims VerifyJWT checks (RFC 7519
// §4.1.4–4.1.6) and, in Unknown, the payload members the embedding struct
// does not read.
type RegisteredClaims struct {
	Expires   NumericDate    `json:"exp"`
	IssuedAt  NumericDate    `json:"iat"`
	NotBefore NumericDate    `json:"nbf"`
	Unknown   jsontext.Value `json:",inline"`
}

func (c *RegisteredClaims) registered() *RegisteredClaims { return c }

// NumericDate is a JWT time (RFC 7519 §2): seconds since the epoch, maybe
// with a fraction. Set is false for an absent member or null. A value
// beyond year 9999, or any other JSON than a number, is refused.
type NumericDate struct {
	Time time.Time
	Set  bool
}

// UnmarshalJSONFrom reads one number (or null).
func (d *NumericDate) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case jsontext.KindNull:
		*d = NumericDate{}
		return nil
	case jsontext.KindNumber:
		t, ok := numericDate(tok.Float())
		if !ok {
			return errors.New("NumericDate out of range")
		}
		*d = NumericDate{Time: t, Set: true}
		return nil
	}
	return errors.New("NumericDate must be a number")
}

// numericDate converts a NumericDate; values beyond year 9999 (or NaN,
// or the infinities an out-of-range JSON number reads as) are refused.
func numericDate(f float64) (time.Time, bool) {
	if !(f >= -62135596800 && f <= 253402300799) {
		return time.Time{}, false
	}
	sec := math.Floor(f)
	return time.Unix(int64(sec), int64((f-sec)*1e9)).UTC(), true
}

// Member is a claim whose presence a kind requires: Set is true when the
// payload has it (null included, read as T's zero value).
type Member[T any] struct {
	Value T
	Set   bool
}

// UnmarshalJSONFrom reads the member's value as T.
func (m *Member[T]) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	m.Set = true
	return json.UnmarshalDecode(dec, &m.Value)
}

// Audience is the aud claim: one string or an array of them (RFC 7519
// §4.1.3); a null element reads as "".
type Audience []string

// UnmarshalJSONFrom reads a string or an array of strings.
func (a *Audience) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	if dec.PeekKind() != jsontext.KindString {
		return json.UnmarshalDecode(dec, (*[]string)(a))
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	*a = Audience{tok.String()}
	return nil
}

// header is the protected header as the verifier reads it. crit and b64
// are read only to refuse them.
type header struct {
	Alg     string         `json:"alg"`
	KID     string         `json:"kid"`
	Typ     string         `json:"typ"`
	JWK     jsontext.Value `json:"jwk"`
	Crit    jsontext.Value `json:"crit"`
	B64     jsontext.Value `json:"b64"`
	Unknown jsontext.Value `json:",inline"`
}

// errNotCompact refuses what is not a compact JWS of base64url parts.
var errNotCompact = &InvalidError{Reason: ReasonMalformed, Detail: "is not a compact JWS"}

// decodeObject reads data, which must be one JSON object, into v (a
// pointer to a struct whose inlined jsontext.Value field, the members no
// other field reads, is *unknown). It refuses as ReasonMalformed a syntax
// error, invalid UTF-8, a duplicate name at any depth and a top-level name
// that differs from one v reads only in case; a member of the wrong type
// as ReasonClaims. part ("header", "payload") starts the detail.
func decodeObject(data []byte, v any, unknown *jsontext.Value, part string) error {
	if len(data) == 0 || data[0] != '{' {
		return invalidBecause(ReasonMalformed, part+" is not a JSON object")
	}
	if err := json.Unmarshal(data, v); err != nil {
		se, syntax := errors.AsType[*jsontext.SyntacticError](err)
		switch {
		case syntax && se.Err == jsontext.ErrDuplicateName:
			return invalidBecause(ReasonMalformed, part+" has a duplicate member name")
		// A wrong type may be met before a syntax error further on; as
		// with encoding/json, the syntax error wins.
		case syntax || !jsontext.Value(data).IsValid():
			return invalidBecause(ReasonMalformed, part+" is not valid JSON")
		}
		return invalidBecause(ReasonClaims, part+" has a member of the wrong type")
	}
	if len(*unknown) > 0 && caseFolded(*unknown, memberNames(reflect.TypeOf(v).Elem())) {
		return invalidBecause(ReasonMalformed, part+" has a case-folded member name")
	}
	return nil
}

// caseFolded reports whether a name of the object obj (the members a
// struct did not read) equals one of names ignoring case, as Unicode
// simple folding has it (strings.EqualFold).
func caseFolded(obj jsontext.Value, names []string) bool {
	dec := jsontext.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.ReadToken(); err != nil { // {
		return true
	}
	for dec.PeekKind() == jsontext.KindString {
		tok, err := dec.ReadToken()
		if err != nil {
			return true
		}
		for _, n := range names {
			if strings.EqualFold(tok.String(), n) {
				return true
			}
		}
		if err := dec.SkipValue(); err != nil {
			return true
		}
	}
	return false
}

var memberNameCache sync.Map // reflect.Type → []string

// memberNames lists the JSON member names the struct type t reads, with
// those of its inlined (embedded) structs.
func memberNames(t reflect.Type) []string {
	if names, ok := memberNameCache.Load(t); ok {
		return names.([]string)
	}
	var names []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for f := range t.Fields() {
			tag, hasTag := f.Tag.Lookup("json")
			name, opts, _ := strings.Cut(tag, ",")
			switch {
			case tag == "-" || !f.IsExported() && !f.Anonymous:
			case f.Anonymous && name == "" || strings.Contains(opts, "inline"):
				if f.Type.Kind() == reflect.Struct {
					walk(f.Type)
				} // else the fallback of the members no field reads

			case !hasTag || name == "":
				names = append(names, f.Name)
			default:
				names = append(names, name)
			}
		}
	}
	walk(t)
	memberNameCache.Store(t, names)
	return names
}

// splitCompact finds the two dots of a compact JWS, refusing anything
// longer than MaxTokenSize or with bytes other than the base64url alphabet
// and the two dots (the decoder would skip CR and LF, letting many strings
// stand for one token).
func splitCompact(raw string) (dot1, dot2 int, ok bool) {
	if len(raw) > MaxTokenSize {
		return 0, 0, false
	}
	dot1, dot2 = -1, -1
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
				return 0, 0, false
			}
		default:
			return 0, 0, false
		}
	}
	return dot1, dot2, dot2 >= 0
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

// sum256 is the SHA-256 of s, without copying s to the heap: hashing a
// []byte(s) conversion would allocate on every call.
func sum256(s string) (sum [sha256.Size]byte) {
	h := sha256.New()
	var chunk [512]byte
	for len(s) > 0 {
		n := copy(chunk[:], s)
		h.Write(chunk[:n])
		s = s[n:]
	}
	h.Sum(sum[:0])
	return sum
}

// verifySignature checks sig over input with key, as key.Alg prescribes
// (RFC 7518 §3.3 and §3.4, ES256 as the fixed-size R||S; RFC 8037 for
// EdDSA). A key of another type or curve than its algorithm's fails.
func verifySignature(key Key, input string, sig []byte) bool {
	switch pub := key.Public.(type) {
	case *rsa.PublicKey:
		if key.Alg != jwa.RS256 {
			return false
		}
		h := sum256(input)
		return rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil
	case *ecdsa.PublicKey:
		if key.Alg != jwa.ES256 || pub.Curve != elliptic.P256() || len(sig) != 64 {
			return false
		}
		h := sum256(input)
		var der [72]byte
		return ecdsa.VerifyASN1(pub, h[:], derSignature(der[:0], sig))
	case ed25519.PublicKey:
		return key.Alg == jwa.EdDSA && len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, []byte(input), sig)
	}
	return false
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

package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// refClaims is the payload as encoding/json reads it: the reference the
// verifier's reading (accessPayload, through decodeObject) must agree with.
type refClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  refAud   `json:"aud"`
	Expires   *float64 `json:"exp"`
	IssuedAt  *float64 `json:"iat"`
	NotBefore *float64 `json:"nbf"`
	JTI       string   `json:"jti"`
	ClientID  string   `json:"client_id"`
	SessionID string   `json:"sid"`
	Name      string   `json:"name"`
	Tag       string   `json:"tag"`
	Anonymous bool     `json:"is_anonymous"`
	Scope     string   `json:"scope"`
}

type refAud []string

func (a *refAud) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*a = refAud{s}
		return nil
	}
	return json.Unmarshal(data, (*[]string)(a))
}

// duplicateNames reports whether an object anywhere in data (valid JSON)
// names a member twice, as encoding/json's tokenizer reads the names.
func duplicateNames(data []byte) bool {
	type level struct {
		object  bool
		wantKey bool
		names   map[string]bool
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // any number is a token, even one beyond float64
	var stack []*level
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return false
		}
		if err != nil {
			panic(err) // data is valid
		}
		var top *level
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch tok {
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil && top.object && top.wantKey {
			name := tok.(string)
			if top.names[name] {
				return true
			}
			top.names[name] = true
			top.wantKey = false
			continue
		}
		if top != nil && top.object {
			top.wantKey = true // this token starts the member's value
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &level{object: true, wantKey: true, names: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, &level{})
		}
	}
}

// caseFoldedName reports whether a top-level name of the object data
// differs from a claim the verifier reads only in case.
func caseFoldedName(data []byte) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil {
		return false
	}
	for name := range m {
		for _, known := range memberNames(reflect.TypeFor[accessPayload]()) {
			if name != known && strings.EqualFold(name, known) {
				return true
			}
		}
	}
	return false
}

// utf8Doubt: invalid UTF-8, raw or as an escaped lone surrogate, which
// encoding/json replaces with U+FFFD and the verifier refuses.
func utf8Doubt(data []byte) bool {
	return !utf8.Valid(data) || bytes.Contains(bytes.ToLower(data), []byte(`\ud`))
}

// checkAgainstEncodingJSON: whatever data is, the verifier's reading
// refuses what encoding/json finds malformed; what it accepts it reads as
// encoding/json does; it reports a wrong type only where encoding/json
// does (or a time beyond NumericDate's range); and it refuses valid JSON
// as malformed only for a duplicate name, a case-folded name or invalid
// UTF-8.
func checkAgainstEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	var got accessPayload
	reason := reasonOf(decodeObject(data, &got, &got.Unknown, "payload"))
	if !json.Valid(data) || len(data) == 0 || data[0] != '{' {
		if reason != ReasonMalformed {
			t.Fatalf("%q: not a JSON object, but read as %+v (reason %q)", data, got, reason)
		}
		return
	}
	var want refClaims
	err := json.Unmarshal(data, &want)
	var te *json.UnmarshalTypeError
	typeErr := errors.As(err, &te)
	if err != nil && !typeErr {
		t.Fatalf("%q: valid JSON, yet encoding/json says %v", data, err)
	}
	switch reason {
	case ReasonMalformed:
		if !duplicateNames(data) && !caseFoldedName(data) && !utf8Doubt(data) {
			t.Fatalf("%q: valid JSON without duplicate or case-folded names refused as malformed", data)
		}
		return
	case ReasonClaims:
		if !typeErr && !outOfRange(want.Expires) && !outOfRange(want.IssuedAt) && !outOfRange(want.NotBefore) {
			t.Fatalf("%q: a wrong type reported, encoding/json reads %+v", data, want)
		}
		return
	case "":
	default:
		t.Fatalf("%q: reason %q", data, reason)
	}
	if typeErr {
		t.Fatalf("%q: encoding/json reports a wrong type (%v), the verifier read %+v", data, err, got)
	}
	if duplicateNames(data) || caseFoldedName(data) {
		t.Fatalf("%q: accepted with a duplicate or case-folded name", data)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil {
		t.Fatal(err)
	}
	has := func(name string) bool { _, ok := members[name]; return ok }
	for _, d := range []struct {
		got  NumericDate
		want *float64
	}{{got.Expires, want.Expires}, {got.IssuedAt, want.IssuedAt}, {got.NotBefore, want.NotBefore}} {
		if d.got.Set != (d.want != nil) {
			t.Fatalf("%q: time set %v, encoding/json %v", data, d.got.Set, d.want)
		}
		if d.want != nil {
			if wt, _ := numericDate(*d.want); !wt.Equal(d.got.Time) {
				t.Fatalf("%q: time %v, encoding/json %v", data, d.got.Time, *d.want)
			}
		}
	}
	if got.Name.Set != has("name") || got.Tag.Set != has("tag") || got.Anonymous.Set != has("is_anonymous") {
		t.Fatalf("%q: presence of name %v, tag %v, is_anonymous %v", data, got.Name.Set, got.Tag.Set, got.Anonymous.Set)
	}
	gotStrs := []string{got.Issuer, got.Subject, got.JTI, got.ClientID, got.SessionID, got.Name.Value, got.Tag.Value, got.Scope}
	wantStrs := []string{want.Issuer, want.Subject, want.JTI, want.ClientID, want.SessionID, want.Name, want.Tag, want.Scope}
	if !slices.Equal(gotStrs, wantStrs) || got.Anonymous.Value != want.Anonymous ||
		!slices.Equal([]string(got.Audience), []string(want.Audience)) || (got.Audience == nil) != (want.Audience == nil) {
		t.Fatalf("%q:\n read %q %v %q\n want %q %v %q", data, gotStrs, got.Anonymous.Value, got.Audience, wantStrs, want.Anonymous, want.Audience)
	}
}

// reasonOf is the Reason of an *InvalidError, "" for nil.
func reasonOf(err error) string {
	if err == nil {
		return ""
	}
	return err.(*InvalidError).Reason
}

func outOfRange(f *float64) bool {
	if f == nil {
		return false
	}
	_, ok := numericDate(*f)
	return !ok
}

var scanSeeds = []string{
	`{"iss":"https://a","sub":"u","aud":["app"],"exp":1700000000,"iat":1.5e9,"nbf":0,"jti":"j","client_id":"app","sid":"s","name":"n","tag":"guest-user","is_anonymous":true,"scope":"openid"}`,
	`{}`, ` {}`, `{} `, `{}x`, `{`, `}`, `[]`, `null`, `"x"`, ``,
	`{"sub":"a",}`, `{,"sub":"a"}`, `{"sub" "a"}`, `{"sub":}`, `{"sub":"a" "tag":"b"}`, `{"sub":"a"}}`,
	`{"aud":"app"}`, `{"aud":null}`, `{"aud":[]}`, `{"aud":["a",null,"b"]}`, `{"aud":["a",1]}`, `{"aud":1}`, `{"aud":{}}`,
	`{"aud":["a","b","c","d","e","f"]}`, `{"aud":["a","b","c","d"]}`, `{"aud":["a","b","c","d","e"]}`,
	`{"sub":null,"exp":null,"is_anonymous":null}`, `{"sub":1}`, `{"sub":true}`, `{"sub":{}}`, `{"sub":[]}`,
	`{"exp":"1"}`, `{"exp":1e400}`, `{"exp":1e300}`, `{"exp":-1e300}`, `{"exp":-0}`, `{"exp":01}`, `{"exp":1.}`, `{"exp":.5}`, `{"exp":1e}`, `{"exp":-}`,
	`{"exp":1E+2}`, `{"exp":1e-2}`, `{"exp":+1}`, `{"exp":0x10}`, `{"exp":NaN}`, `{"exp":Infinity}`, `{"exp":true}`, `{"exp":[1]}`,
	`{"is_anonymous":"true"}`, `{"is_anonymous":1}`, `{"is_anonymous":tru}`, `{"is_anonymous":falsey}`, `{"is_anonymous":nul}`,
	`{"name":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"}`, `{"name":"\x"}`, `{"name":"\u12"}`, `{"name":"\u12G4"}`,
	"{\"name\":\"a\x01b\"}", "{\"name\":\"\xff\xfe\"}", "{\"name\":\"é\"}", `{"name":"\ud800"}`, `{"name":null,"tag":null}`,
	`{"s\u0075b":"x"}`, `{"\u0073ub":"x","sub":"y"}`, `{"SUB":"x"}`, "{\"ſub\":\"x\"}", `{"sub":"a","sub":"b"}`, `{"Exp":1}`, `{"UNKNOWN":1,"unknown":2}`,
	`{"x":1,"x":2}`, `{"x":{"a":1,"a":2}}`, `{"x":[{"a":1},{"a":2}]}`, `{"x":[1,{"y":[true,false,null]}]}`, `{"x":[1,]}`, `{"x":{"a"}}`,
	"{\t\"sub\"\n:\r\"a\" }", "{\"sub\":\"a\"}\n", `{"x":"\"}`, `{"x":"`, `{"x":[`, `{"x":{`,
	`{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1}`,
	`{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1,"q":1}`,
	`{"":1}`, `{"":1,"":2}`, `{"RegisteredClaims":{}}`, `{"Unknown":1}`, `{"Value":"x","Set":true}`,
}

// TestDecodeObjectAgreesWithEncodingJSON runs the seeds through the check
// FuzzDecodeObject fuzzes.
func TestDecodeObjectAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range scanSeeds {
		checkAgainstEncodingJSON(t, []byte(s))
	}
}

// TestDecodeObjectRefusals: the refusals the verifier adds to
// encoding/json's, in a header and a payload alike.
func TestDecodeObjectRefusals(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		`{"sub":"a","sub":"b"}`, `{"s\u0075b":"x","sub":"y"}`, `{"SUB":"x"}`, `{"Sub":"x","sub":"y"}`, "{\"ſub\":\"x\"}", `{"EXP":1}`, `{"Is_Anonymous":true}`,
		`{"x":1,"x":2}`, `{"":1,"":2}`, `{"x":{"a":1,"a":2}}`, `{"x":[{"a":1,"a":2}]}`, "{\"name\":\"\xff\"}", `{"name":"\udc00"}`,
		`{"exp":1}x`, ` {"exp":1}`, `[{"exp":1}]`, `null`, ``,
	} {
		var p accessPayload
		if reason := reasonOf(decodeObject([]byte(s), &p, &p.Unknown, "payload")); reason != ReasonMalformed {
			t.Errorf("payload %s: reason %q, want %q", s, reason, ReasonMalformed)
		}
	}
	for _, s := range []string{`{"alg":"ES256","ALG":"none"}`, `{"Kid":"x"}`, `{"TYP":"at+jwt"}`, `{"JWK":{}}`, `{"Crit":[]}`, `{"B64":false}`,
		`{"alg":"ES256","alg":"none"}`, `{"jwk":{"kty":"EC","kty":"RSA"}}`} {
		var h header
		if reason := reasonOf(decodeObject([]byte(s), &h, &h.Unknown, "header")); reason != ReasonMalformed {
			t.Errorf("header %s: reason %q, want %q", s, reason, ReasonMalformed)
		}
	}
	// Names the reader does not know, in any case, pass.
	var p accessPayload
	if err := decodeObject([]byte(`{"sub":"a","X":1,"x":2,"device_info":{"ios":{}}}`), &p, &p.Unknown, "payload"); err != nil || p.Subject != "a" {
		t.Errorf("unknown members: %v, %+v", err, p)
	}
}

func TestMemberNames(t *testing.T) {
	t.Parallel()
	want := []string{"exp", "iat", "nbf", "iss", "sub", "aud", "jti", "client_id", "sid", "name", "tag", "is_anonymous", "scope", "owner", "id"}
	if got := memberNames(reflect.TypeFor[accessPayload]()); !slices.Equal(got, want) {
		t.Fatalf("%q, want %q", got, want)
	}
	if got := memberNames(reflect.TypeFor[header]()); !slices.Equal(got, []string{"alg", "kid", "typ", "jwk", "crit", "b64"}) {
		t.Fatalf("header: %q", got)
	}
}

func FuzzDecodeObject(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkAgainstEncodingJSON)
}

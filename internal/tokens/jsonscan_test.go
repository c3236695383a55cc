package tokens

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// refClaims is the payload as encoding/json reads it: the reference the
// one-pass reader must agree with.
type refClaims struct {
	Issuer    string  `json:"iss"`
	Subject   string  `json:"sub"`
	Audience  refAud  `json:"aud"`
	Expires   float64 `json:"exp"`
	IssuedAt  float64 `json:"iat"`
	NotBefore float64 `json:"nbf"`
	JTI       string  `json:"jti"`
	ClientID  string  `json:"client_id"`
	SessionID string  `json:"sid"`
	Name      string  `json:"name"`
	Tag       string  `json:"tag"`
	Anonymous bool    `json:"is_anonymous"`
	Scope     string  `json:"scope"`
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

// readClaims is what parse reads from a scanned payload; ok is false for a
// member of the wrong type.
func readClaims(data []byte) (c refClaims, reason string, ok bool) {
	vals, _, reason := scanObject(data, claimFields)
	if reason != "" {
		return c, reason, false
	}
	ok = true
	str := func(i int, dst *string) {
		s, good := jsonString(vals[i])
		*dst = strings.Clone(s)
		ok = ok && good
	}
	str(claimIss, &c.Issuer)
	str(claimSub, &c.Subject)
	str(claimJTI, &c.JTI)
	str(claimClientID, &c.ClientID)
	str(claimSid, &c.SessionID)
	str(claimName, &c.Name)
	str(claimTag, &c.Tag)
	str(claimScope, &c.Scope)
	few, n, many, good := jsonStrings(vals[claimAud])
	ok = ok && good
	if many == nil && vals[claimAud] != nil && vals[claimAud][0] != 'n' {
		many = make([]string, 0, n)
		for _, s := range few[:n] {
			many = append(many, strings.Clone(s))
		}
	}
	c.Audience = many
	for _, f := range []struct {
		i   int
		dst *float64
	}{{claimExp, &c.Expires}, {claimIat, &c.IssuedAt}, {claimNbf, &c.NotBefore}} {
		v, good := jsonNumber(vals[f.i])
		*f.dst = v
		ok = ok && good
	}
	c.Anonymous, good = jsonBool(vals[claimAnon])
	return c, "", ok && good
}

// checkAgainstEncodingJSON: whatever data is, the one-pass reader refuses
// what encoding/json finds malformed, and what it accepts it reads as
// encoding/json does (a wrong type where encoding/json reports one).
func checkAgainstEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	got, reason, ok := readClaims(data)
	valid := json.Valid(data) && len(data) > 0 && data[0] == '{'
	if !valid {
		if reason != ReasonMalformed {
			t.Fatalf("%q: not a JSON object, but read as %+v (reason %q)", data, got, reason)
		}
		return
	}
	if reason != "" {
		return // refused: a duplicate, a case-folded name or too many members
	}
	var want refClaims
	err := json.Unmarshal(data, &want)
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		if ok {
			t.Fatalf("%q: encoding/json reports a wrong type (%v), the reader none: %+v", data, err, got)
		}
		return
	case err != nil:
		t.Fatalf("%q: valid JSON, yet encoding/json says %v", data, err)
	case !ok:
		t.Fatalf("%q: the reader reports a wrong type, encoding/json none: %+v", data, want)
	}
	wantAud, gotAud := want.Audience, got.Audience
	want.Audience, got.Audience = nil, nil
	if !reflect.DeepEqual(got, want) || !slices.Equal(wantAud, gotAud) || (wantAud == nil) != (gotAud == nil) {
		t.Fatalf("%q:\n read %+v %q\n want %+v %q", data, got, gotAud, want, wantAud)
	}
}

var scanSeeds = []string{
	`{"iss":"https://a","sub":"u","aud":["app"],"exp":1700000000,"iat":1.5e9,"nbf":0,"jti":"j","client_id":"app","sid":"s","name":"n","tag":"guest-user","is_anonymous":true,"scope":"openid"}`,
	`{}`, ` {}`, `{} `, `{}x`, `{`, `}`, `[]`, `null`, `"x"`, ``,
	`{"sub":"a",}`, `{,"sub":"a"}`, `{"sub" "a"}`, `{"sub":}`, `{"sub":"a" "tag":"b"}`, `{"sub":"a"}}`,
	`{"aud":"app"}`, `{"aud":null}`, `{"aud":[]}`, `{"aud":["a",null,"b"]}`, `{"aud":["a",1]}`, `{"aud":1}`, `{"aud":{}}`,
	`{"aud":["a","b","c","d","e","f"]}`, `{"aud":["a","b","c","d"]}`, `{"aud":["a","b","c","d","e"]}`,
	`{"sub":null,"exp":null,"is_anonymous":null}`, `{"sub":1}`, `{"sub":true}`, `{"sub":{}}`, `{"sub":[]}`,
	`{"exp":"1"}`, `{"exp":1e400}`, `{"exp":-0}`, `{"exp":01}`, `{"exp":1.}`, `{"exp":.5}`, `{"exp":1e}`, `{"exp":-}`,
	`{"exp":1E+2}`, `{"exp":1e-2}`, `{"exp":+1}`, `{"exp":0x10}`, `{"exp":NaN}`, `{"exp":Infinity}`,
	`{"is_anonymous":"true"}`, `{"is_anonymous":1}`, `{"is_anonymous":tru}`, `{"is_anonymous":falsey}`, `{"is_anonymous":nul}`,
	`{"name":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"}`, `{"name":"\x"}`, `{"name":"\u12"}`, `{"name":"\u12G4"}`,
	"{\"name\":\"a\x01b\"}", "{\"name\":\"\xff\xfe\"}", "{\"name\":\"é\"}", `{"name":"\ud800"}`,
	`{"s\u0075b":"x"}`, `{"\u0073ub":"x","sub":"y"}`, `{"SUB":"x"}`, "{\"ſub\":\"x\"}", `{"sub":"a","sub":"b"}`,
	`{"x":1,"x":2}`, `{"x":{"a":1,"a":2}}`, `{"x":[1,{"y":[true,false,null]}]}`, `{"x":[1,]}`, `{"x":{"a"}}`,
	"{\t\"sub\"\n:\r\"a\" }", "{\"sub\":\"a\"}\n", `{"x":"\"}`, `{"x":"`, `{"x":[`, `{"x":{`,
	`{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1}`,
	`{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1,"q":1}`,
	`{"":1}`, `{"":1,"":2}`,
}

// TestScanObjectAgreesWithEncodingJSON runs the seeds through the check
// FuzzScanObject fuzzes.
func TestScanObjectAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range scanSeeds {
		checkAgainstEncodingJSON(t, []byte(s))
	}
	// The refusals the reader adds to encoding/json's.
	for _, s := range []string{`{"sub":"a","sub":"b"}`, `{"s\u0075b":"x","sub":"y"}`, `{"SUB":"x"}`, "{\"ſub\":\"x\"}", `{"x":1,"x":2}`, `{"":1,"":2}`,
		`{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1,"o":1,"p":1,"q":1}`} {
		if _, _, reason := scanObject([]byte(s), claimFields); reason != ReasonMalformed {
			t.Errorf("%s: reason %q, want %q", s, reason, ReasonMalformed)
		}
	}
}

func FuzzScanObject(f *testing.F) {
	for _, s := range scanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkAgainstEncodingJSON)
}

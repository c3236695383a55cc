package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

var (
	fullUser = model.User{
		ID: "0199b2c4-7e1a-7c3d-9f00-000000000001", Name: "guest_1", DisplayName: "Guest One", Tag: model.TagGuest,
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", DeviceKID: "dk1",
		CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC), UpdatedAt: time.Date(2030, 1, 2, 3, 4, 6, 0, time.UTC),
		OrphanedAt: time.Date(2030, 2, 1, 0, 0, 0, 0, time.FixedZone("", 3600)), LastActiveAt: time.Date(2030, 1, 3, 0, 0, 0, 123, time.UTC),
		Kept: true, Email: "a@example.test", EmailVerified: true, Passkeys: 2, Identities: 2,
	}
	fullSession = model.Session{
		ID: "s1", UserID: fullUser.ID, ClientID: "app",
		AuthTime: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 1, time.UTC),
		LastUsedAt: time.Date(2030, 1, 2, 4, 0, 0, 0, time.UTC), ExpiresAt: time.Date(2030, 2, 2, 3, 4, 5, 0, time.UTC),
		IdleExpiresAt: time.Date(2030, 1, 9, 4, 0, 0, 0, time.UTC), RefreshKey: []byte("0123456789abcdef0123456789abcdef"),
		Generation: 7, MergedFrom: "g1", Scope: "openid profile", Issuer: "https://a.example",
	}
)

// Every member of a record json.Marshal wrote is read back as
// json.Unmarshal reads it: a field added to a record type reads back (the
// full records set every field, so the test notices one it does not).
func TestDecodeRecordReadsEveryField(t *testing.T) {
	t.Parallel()
	for _, v := range []any{&fullUser, &fullSession, &model.User{ID: "u"}, &model.Session{ID: "s", RefreshKey: []byte{}}, &fullDevice, &fullKey, &fullChallenge, &fullFlow, &fullLink, &fullPasskey} {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		typ := reflect.TypeOf(v).Elem()
		if v == any(&fullUser) || v == any(&fullSession) || v == any(&fullDevice) || v == any(&fullKey) || v == any(&fullChallenge) || v == any(&fullFlow) || v == any(&fullLink) || v == any(&fullPasskey) {
			rv := reflect.ValueOf(v).Elem()
			for i := range rv.NumField() {
				if rv.Field(i).IsZero() {
					t.Fatalf("%s.%s is not set in the test record", typ.Name(), typ.Field(i).Name)
				}
			}
		}
		want := reflect.New(typ).Interface()
		if err := json.Unmarshal(raw, want); err != nil {
			t.Fatal(err)
		}
		got := reflect.New(typ).Interface()
		if err := DecodeRecord(raw, got); err != nil {
			t.Fatalf("%s: %v", typ.Name(), err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n got  %+v\n want %+v", typ.Name(), got, want)
		}
	}
}

var (
	fullDevice = model.Device{KID: "dk1", UserID: "u1", JWK: []byte(`{"kty":"OKP"}`), CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	fullKey    = model.SigningKey{KID: "k1", Alg: "ES256", CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), JWK: []byte(`{"kty":"EC"}`), Cert: []byte{0x30, 0x82, 1, 2}}
	fullFlow   = model.FlowState{Kind: "code", CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), ExpiresAt: time.Date(2030, 1, 2, 3, 5, 5, 0, time.UTC),
		SpentAt: time.Date(2030, 1, 2, 3, 4, 6, 0, time.UTC), Data: json.RawMessage(`{"client_id":"app","n":[1,2]}`)}
	fullLink    = model.IdentityLink{Issuer: "https://idp.example", Subject: "sub", UserID: "u1", Provider: "idp", LinkedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	fullPasskey = model.Passkey{ID: "Y3JlZA", UserID: "u1", Name: "laptop", CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC),
		LastUsedAt: time.Date(2030, 1, 3, 3, 4, 5, 0, time.UTC), Credential: json.RawMessage(`{"id":"Y3JlZA","flags":{"backupState":true}}`)}
	fullChallenge = model.Challenge{Purpose: "anonymous_request", CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), ExpiresAt: time.Date(2030, 1, 2, 3, 9, 5, 0, time.UTC), UserID: "u1", ClientID: "spa"}
)

// A record that encoding/json could read two ways is not read one of them:
// a repeated member name is refused, and a member name matches its field
// only exactly (encoding/json matched "User_ID" to user_id, and a repeated
// name took the last value).
func TestDecodeRecordRefusesAmbiguity(t *testing.T) {
	t.Parallel()
	canon, _ := json.Marshal(&fullSession)
	for _, c := range []string{
		strings.Replace(string(canon), `"generation":7`, `"generation":7,"generation":8`, 1),
		strings.Replace(string(canon), `"user_id":"`, `"user_id":"x","user_id":"`, 1),
		`{"id":"a","id":"a"}`,
		"{\"id\":\"a\xffb\"}", // invalid UTF-8
	} {
		var s model.Session
		if err := DecodeRecord([]byte(c), &s); err == nil {
			t.Errorf("%q was read: %+v", c, s)
		}
	}
	// A case-folded name is an unknown member: ignored, whichever comes
	// first (encoding/json would have read it as user_id).
	for _, c := range []string{
		strings.Replace(string(canon), `"client_id"`, `"User_ID":"attacker","client_id"`, 1),
		strings.Replace(string(canon), `,"client_id"`, `,"USER_ID":"attacker","client_id"`, 1) + ``,
	} {
		var s, v1 model.Session
		if err := DecodeRecord([]byte(c), &s); err != nil || s.UserID != fullSession.UserID {
			t.Errorf("%s: user id %q, %v; want %q", c, s.UserID, err, fullSession.UserID)
		}
		if err := json.Unmarshal([]byte(c), &v1); err != nil || v1.UserID != "attacker" {
			t.Errorf("encoding/json read %s as %q, %v (the test's premise)", c, v1.UserID, err)
		}
	}
}

// Records not in json.Marshal's form, but not ambiguous either, read as
// json.Unmarshal reads them (on an error the value is not used: unlike
// json.Unmarshal, DecodeRecord may have filled part of it).
func TestDecodeRecordOffCanonicalForm(t *testing.T) {
	t.Parallel()
	canon, _ := json.Marshal(&fullSession)
	user, _ := json.Marshal(&fullUser)
	sessions := []string{
		strings.Replace(string(canon), `"id":"s1"`, `"id":"s\u0031"`, 1),            // escape
		strings.Replace(string(canon), `"client_id":"app"`, `"client_id":"äpp"`, 1), // non-ASCII
		strings.Replace(string(canon), `,"merged_from":"g1"`, `,"merged_from":null`, 1),
		strings.Replace(string(canon), `{`, `{ `, 1), // whitespace
		strings.Replace(string(canon), `"generation":7`, `"generation":7,"future":{"x":[1]}`, 1),
		strings.Replace(string(canon), `"refresh_key":"`, `"refresh_key":null,"x":"`, 1),
		`{}`,
		`{"generation":"7"}`,
		`{"generation":-1}`,
		`{"expires_at":"yesterday"}`,
		`[]`,
		`null`,
	}
	for _, c := range sessions {
		var want, got model.Session
		errWant := json.Unmarshal([]byte(c), &want)
		errGot := DecodeRecord([]byte(c), &got)
		if (errWant == nil) != (errGot == nil) || errGot == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got  %+v, %v\n want %+v, %v", c, got, errGot, want, errWant)
		}
	}
	for _, c := range []string{
		strings.Replace(string(user), `"kept":true`, `"kept":1`, 1),
		strings.Replace(string(user), `"created_at":"`, `"created_at":"x`, 1),
		strings.Replace(string(user), `"name":"guest_1"`, `"name":"guest_\n1"`, 1),
		strings.Replace(string(user), `"name":"guest_1"`, `"name":"guest_\"1"`, 1),
		string(user) + " ",
		string(user) + "x",
	} {
		var want, got model.User
		errWant := json.Unmarshal([]byte(c), &want)
		errGot := DecodeRecord([]byte(c), &got)
		if (errWant == nil) != (errGot == nil) || errGot == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got  %+v, %v\n want %+v, %v", c, got, errGot, want, errWant)
		}
	}
}

// BenchmarkDecodeRecords: a guest's user and session records, as read on
// an identity-cache miss.
func BenchmarkDecodeRecords(b *testing.B) {
	u, _ := json.Marshal(&fullUser)
	s, _ := json.Marshal(&fullSession)
	b.Run("DecodeRecord", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var uu model.User
			var ss model.Session
			if DecodeRecord(u, &uu) != nil || DecodeRecord(s, &ss) != nil {
				b.Fatal("decode")
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var uu model.User
			var ss model.Session
			if json.Unmarshal(u, &uu) != nil || json.Unmarshal(s, &ss) != nil {
				b.Fatal("decode")
			}
		}
	})
}

// ambiguous reports whether raw, a JSON object, has a member name twice or
// a member name that matches a field of v's type only case-insensitively:
// the records encoding/json reads differently from DecodeRecord.
func ambiguous(raw []byte, v any) bool {
	dec := jsontext.NewDecoder(bytes.NewReader(raw), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return false
	}
	fields := map[string]bool{}
	typ := reflect.TypeOf(v).Elem()
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		fields[name] = true
	}
	seen := map[string]bool{}
	for dec.PeekKind() == '"' {
		tok, err := dec.ReadToken()
		if err != nil {
			return false
		}
		name := tok.String()
		if seen[name] {
			return true
		}
		seen[name] = true
		if !fields[name] {
			for f := range fields {
				if strings.EqualFold(f, name) {
					return true
				}
			}
		}
		if err := dec.SkipValue(); err != nil {
			return false
		}
	}
	return false
}

// strictTime reports whether err refused a time as not RFC 3339 (such as
// "T0:00:00Z", a one-digit hour, which time.Time.UnmarshalJSON accepts).
func strictTime(err error) bool {
	var se *jsonv2.SemanticError
	return errors.As(err, &se) && se.GoType == reflect.TypeFor[time.Time]()
}

// FuzzDecodeRecord: whatever the bytes, DecodeRecord reads a record as
// json.Unmarshal does — the same error-or-not and, without an error, the
// same value — unless the record is one json.Unmarshal could read two
// ways (see ambiguous) or is not valid JSON by the letter, which
// DecodeRecord refuses or (a case-folded name) ignores.
func FuzzDecodeRecord(f *testing.F) {
	user, _ := json.Marshal(&fullUser)
	session, _ := json.Marshal(&fullSession)
	small, _ := json.Marshal(&model.User{ID: "u"})
	for _, seed := range [][]byte{user, session, small, []byte(`{}`), []byte(`{"id":"a","id":"b"}`), []byte(`{"ID":"a"}`), []byte(`{"id":"\ud800"}`)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		check := func(wantV, gotV any) {
			errWant, errGot := json.Unmarshal(raw, wantV), DecodeRecord(raw, gotV)
			if errGot == nil && (errWant != nil || !reflect.DeepEqual(gotV, wantV)) && !ambiguous(raw, gotV) {
				t.Fatalf("%q: DecodeRecord read %+v; encoding/json %+v, %v", raw, gotV, wantV, errWant)
			}
			// Refused where encoding/json read it: only for JSON that is
			// not valid by RFC 8259's letter (invalid UTF-8, a lone
			// surrogate escape, a repeated name).
			if errGot != nil && errWant == nil && jsontext.Value(raw).IsValid() && !strictTime(errGot) {
				t.Fatalf("%q: DecodeRecord refused it (%v); encoding/json read %+v", raw, errGot, wantV)
			}
		}
		check(new(model.User), new(model.User))
		check(new(model.Session), new(model.Session))
	})
}

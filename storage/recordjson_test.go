package storage

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

var (
	fullUser = model.User{
		ID: "0199b2c4-7e1a-7c3d-9f00-000000000001", Name: "guest_1", DisplayName: "Guest One", Tag: model.TagGuest,
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", DeviceKID: "dk1",
		CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC), UpdatedAt: time.Date(2030, 1, 2, 3, 4, 6, 0, time.UTC),
		OrphanedAt: time.Date(2030, 2, 1, 0, 0, 0, 0, time.FixedZone("", 3600)), LastActiveAt: time.Date(2030, 1, 3, 0, 0, 0, 123, time.UTC),
		Kept: true,
	}
	fullSession = model.Session{
		ID: "s1", UserID: fullUser.ID, ClientID: "app",
		AuthTime: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), CreatedAt: time.Date(2030, 1, 2, 3, 4, 5, 1, time.UTC),
		LastUsedAt: time.Date(2030, 1, 2, 4, 0, 0, 0, time.UTC), ExpiresAt: time.Date(2030, 2, 2, 3, 4, 5, 0, time.UTC),
		IdleExpiresAt: time.Date(2030, 1, 9, 4, 0, 0, 0, time.UTC), RefreshKey: []byte("0123456789abcdef0123456789abcdef"),
		Generation: 7, MergedFrom: "g1",
	}
)

// Every member of a record json.Marshal wrote is read by the fast path, as
// json.Unmarshal reads it: a field added to User or Session without a case
// in fastDecode fails here (it would silently fall back to the slow path).
func TestFastDecodeReadsEveryField(t *testing.T) {
	t.Parallel()
	for _, v := range []any{&fullUser, &fullSession, &model.User{ID: "u"}, &model.Session{ID: "s", RefreshKey: []byte{}}} {
		raw, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		typ := reflect.TypeOf(v).Elem()
		// Every field set in the full records: none left at its zero value.
		if v == &fullUser || v == &fullSession {
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
		if !fastDecode(raw, got) {
			t.Fatalf("%s: the fast path refused %s", typ.Name(), raw)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\n fast %+v\n want %+v", typ.Name(), got, want)
		}
	}
}

// Records not in json.Marshal's form are read by json.Unmarshal, so they
// mean the same whichever path reads them.
func TestDecodeRecordOffTheFastPath(t *testing.T) {
	t.Parallel()
	canon, _ := json.Marshal(&fullSession)
	user, _ := json.Marshal(&fullUser)
	cases := []string{
		strings.Replace(string(canon), `"id":"s1"`, `"id":"s\u0031"`, 1),            // escape
		strings.Replace(string(canon), `"client_id":"app"`, `"client_id":"äpp"`, 1), // non-ASCII
		strings.Replace(string(canon), `,"merged_from":"g1"`, `,"merged_from":null`, 1),
		strings.Replace(string(canon), `"generation":7`, `"generation":7,"generation":8`, 1), // duplicate: last wins
		strings.Replace(string(canon), `"user_id"`, `"User_ID"`, 1),                          // case-folded name
		strings.Replace(string(canon), `{`, `{ `, 1),                                         // whitespace
		strings.Replace(string(canon), `"generation":7`, `"generation":7,"future":{"x":[1]}`, 1),
		strings.Replace(string(canon), `"refresh_key":"`, `"refresh_key":null,"x":"`, 1),
		`{}`,
	}
	for _, c := range cases {
		var want, got model.Session
		errWant := json.Unmarshal([]byte(c), &want)
		errGot := decodeSession([]byte(c), &got)
		if (errWant == nil) != (errGot == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v, %v\n want %+v, %v", c, got, errGot, want, errWant)
		}
	}
	for _, c := range []string{
		strings.Replace(string(user), `"kept":true`, `"kept":1`, 1),
		strings.Replace(string(user), `"created_at":"`, `"created_at":"x`, 1),
		strings.Replace(string(user), `"name":"guest_1"`, `"name":"guest_\n1"`, 1),
		strings.Replace(string(user), `"name":"guest_1"`, `"name":"guest_\"1"`, 1),
		string(user) + " ",
	} {
		var want, got model.User
		errWant := json.Unmarshal([]byte(c), &want)
		errGot := decodeUser([]byte(c), &got)
		if (errWant == nil) != (errGot == nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %+v, %v\n want %+v, %v", c, got, errGot, want, errWant)
		}
	}
}

func BenchmarkDecodeRecords(b *testing.B) {
	u, _ := json.Marshal(&fullUser)
	s, _ := json.Marshal(&fullSession)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var uu model.User
			var ss model.Session
			if decodeUser(u, &uu) != nil || decodeSession(s, &ss) != nil {
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

// FuzzDecodeRecord: whatever the bytes, the record decoders agree with
// json.Unmarshal — the same error-or-not and, without an error, the same
// value — so the fast path can never read a record differently.
func FuzzDecodeRecord(f *testing.F) {
	user, _ := json.Marshal(&fullUser)
	session, _ := json.Marshal(&fullSession)
	small, _ := json.Marshal(&model.User{ID: "u"})
	for _, seed := range [][]byte{user, session, small, []byte(`{}`), []byte(`{"id":"a","id":"b"}`)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var wantU, gotU model.User
		errWant, errGot := json.Unmarshal(raw, &wantU), decodeUser(raw, &gotU)
		if (errWant == nil) != (errGot == nil) || errWant == nil && !reflect.DeepEqual(gotU, wantU) {
			t.Fatalf("user %q:\n got %+v, %v\n want %+v, %v", raw, gotU, errGot, wantU, errWant)
		}
		var wantS, gotS model.Session
		errWant, errGot = json.Unmarshal(raw, &wantS), decodeSession(raw, &gotS)
		if (errWant == nil) != (errGot == nil) || errWant == nil && !reflect.DeepEqual(gotS, wantS) {
			t.Fatalf("session %q:\n got %+v, %v\n want %+v, %v", raw, gotS, errGot, wantS, errWant)
		}
	})
}

package protocol

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// FuzzReadParams: no request body makes readParams panic, and a refusal is
// always an RFC 6749 error, never something that would become a 500.
func FuzzReadParams(f *testing.F) {
	for _, seed := range []struct{ ct, body string }{
		{"application/json", `{"grant_type":"authorization_code","code":"guest-user"}`},
		{"application/json", `{"a":1}`},
		{"application/json", `{"a":"1","a":"2"}`},
		{"application/json", `{"a":"1","\u0061":null}`},
		{"application/json", `[]`},
		{"application/json; charset=utf-8", `{"a":"b"} {}`},
		{"application/x-www-form-urlencoded", "a=b&a=c"},
		{"application/x-www-form-urlencoded", "%zz"},
		{"text/plain", "x"},
		{"", ""},
	} {
		f.Add(seed.ct, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/oauth/token", bytes.NewReader(body))
		r.Header.Set("Content-Type", ct)
		params, err := readParams(httptest.NewRecorder(), r)
		if err == nil {
			if params == nil {
				t.Fatal("nil params without an error")
			}
			return
		}
		var ae *accounts.Error
		var he *httpError
		if !errors.As(err, &ae) && !errors.As(err, &he) {
			t.Fatalf("refusal of type %T: %v", err, err)
		}
	})
}

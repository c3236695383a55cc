package protocol

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

func postBody(ct, body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/oauth/token", strings.NewReader(body))
	r.Header.Set("Content-Type", ct)
	return r
}

// A JSON body naming a parameter twice is refused as invalid_request (400),
// as a repeated form field is: encoding/json alone would keep the last one.
func TestReadParamsRefusesDuplicateJSONKeys(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"a":"1","a":"2"}`,
		`{"grant_type":"authorization_code","code":"x","code":"guest-user"}`,
		`{"a":"1","\u0061":"2"}`, // the same key, escaped
		`{"a":null,"a":"2"}`,
		`{"client_secret":"s","b":"c","client_secret":"t"}`,
	} {
		_, err := readParams(httptest.NewRecorder(), postBody("application/json", body))
		var ae *accounts.Error
		if !errors.As(err, &ae) || ae.Code != accounts.CodeInvalidRequest || !strings.Contains(ae.Description, "repeated") {
			t.Errorf("%s: err = %v, want invalid_request (repeated)", body, err)
		}
		if status := oauthStatus[accounts.CodeInvalidRequest]; status != http.StatusBadRequest {
			t.Fatalf("invalid_request maps to %d", status)
		}
	}
}

func TestReadParamsJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		want map[string]string
		err  string
	}{
		{`{"a":"1","b":"2"}`, map[string]string{"a": "1", "b": "2"}, ""},
		{`{"a":"1","A":"2"}`, map[string]string{"a": "1", "A": "2"}, ""}, // keys are case-sensitive
		{`{"a":null,"b":"x"}`, map[string]string{"b": "x"}, ""},
		{` {} `, map[string]string{}, ""},
		{`{"a":1}`, nil, "must be a string"},
		{`{"a":true}`, nil, "must be a string"},
		{`{"a":{"b":"c"}}`, nil, "must be a string"},
		{`{"a":["b"]}`, nil, "must be a string"},
		{`[]`, nil, "not a JSON object"},
		{`null`, nil, "not a JSON object"},
		{`"a"`, nil, "not a JSON object"},
		{`{"a":"b"`, nil, "not a JSON object"},
		{`{"a" "b"}`, nil, "not a JSON object"},
		{`{"a":"b"} {}`, nil, "after the JSON object"},
		{`{"a":"b"} x`, nil, "after the JSON object"},
		{``, nil, "not a JSON object"},
	} {
		got, err := readParams(httptest.NewRecorder(), postBody("application/json", tc.body))
		if tc.err != "" {
			var ae *accounts.Error
			if !errors.As(err, &ae) || ae.Code != accounts.CodeInvalidRequest || !strings.Contains(ae.Description, tc.err) {
				t.Errorf("%s: err = %v, want invalid_request %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.body, got, err, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %q = %q, want %q", tc.body, k, got[k], v)
			}
		}
	}
}

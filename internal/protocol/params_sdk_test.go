package protocol

import (
	"bytes"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// The Casdoor formats are read only where asked for; the RFC 6749 reader
// still refuses them.
func TestReadParamsAs(t *testing.T) {
	t.Parallel()
	ct, mp := multipartBody(map[string]string{"token": "t", "token_type_hint": "access_token"})
	for _, c := range []struct {
		name, ct string
		body     []byte
		formats  bodyFormats
		want     map[string]string
		err      string
	}{
		{"text/plain JSON", "text/plain;charset=UTF-8", []byte(`{"a":"1"}`), textJSON, map[string]string{"a": "1"}, ""},
		{"text/plain JSON, not asked", "text/plain;charset=UTF-8", []byte(`{"a":"1"}`), multipartFields, nil, "Content-Type"},
		{"text/plain, not JSON", "text/plain", []byte(`a=1`), textJSON, nil, "not a JSON object"},
		{"text/plain, a number", "text/plain", []byte(`{"a":1}`), textJSON, nil, "must be a string"},
		{"text/plain, repeated", "text/plain", []byte(`{"a":"1","a":"2"}`), textJSON, nil, "repeated"},
		{"multipart", ct, mp, multipartFields, map[string]string{"token": "t", "token_type_hint": "access_token"}, ""},
		{"multipart, not asked", ct, mp, textJSON, nil, "Content-Type"},
		{"multipart without a boundary", "multipart/form-data", mp, multipartFields, nil, "no boundary"},
		{"multipart, broken", "multipart/form-data; boundary=B", []byte("--B\r\nno header line\r\n\r\nx\r\n--B--\r\n"), multipartFields, nil, "malformed"},
		{"multipart, unfinished", "multipart/form-data; boundary=B", []byte("--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx"), multipartFields, nil, "malformed"},
		{"form still read", "application/x-www-form-urlencoded", []byte("a=1"), textJSON | multipartFields, map[string]string{"a": "1"}, ""},
		{"JSON still strict", "application/json", []byte(`{"a":true}`), textJSON | multipartFields, nil, "must be a string"},
	} {
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(c.body))
		r.Header.Set("Content-Type", c.ct)
		got, err := readParamsAs(httptest.NewRecorder(), r, c.formats)
		if c.err != "" {
			var ae *accounts.Error
			if !errors.As(err, &ae) || ae.Code != accounts.CodeInvalidRequest || !strings.Contains(ae.Description, c.err) {
				t.Errorf("%s: %v, %v; want invalid_request %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", c.name, k, got[k], v)
			}
		}
	}
}

// A multipart body with a file, a repeated field or too many fields is
// refused.
func TestMultipartRefusals(t *testing.T) {
	t.Parallel()
	build := func(f func(w *multipart.Writer)) (string, []byte) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		f(w)
		w.Close()
		return w.Boundary(), b.Bytes()
	}
	for name, f := range map[string]func(w *multipart.Writer){
		"file": func(w *multipart.Writer) {
			fw, _ := w.CreateFormFile("file", "a.txt")
			fw.Write([]byte("x"))
		},
		"repeated": func(w *multipart.Writer) { w.WriteField("a", "1"); w.WriteField("a", "2") },
		"too many": func(w *multipart.Writer) {
			for i := range maxMultipartFields + 1 {
				w.WriteField(strings.Repeat("k", i+1), "v")
			}
		},
	} {
		boundary, body := build(f)
		if _, err := multipartParams(body, boundary); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A user object's string members are read; other values, of any depth,
// are skipped; the object must be one, named once per member.
func TestUserObject(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		body string
		want map[string]string
		err  string
	}{
		{`{"name":"a","isAdmin":false,"score":1.5,"roles":null,"address":["x",{"y":[1,{"z":2}]}],"properties":{"k":"v","k":"w"},"displayName":""}`,
			map[string]string{"name": "a", "displayName": ""}, ""},
		{`{}`, map[string]string{}, ""},
		{`{"name":"a","name":"b"}`, nil, "repeated"},
		{`{"name":"a","nested":{"name":"b"}}`, map[string]string{"name": "a"}, ""},
		{`[]`, nil, "not a JSON object"},
		{`{"a":[}`, nil, "not a JSON object"},
		{`{"a":{]}`, nil, "not a JSON object"},
		{`{"a":"b"} {}`, nil, "after the JSON object"},
		{`{"a":"b"`, nil, "not a JSON object"},
		{``, nil, "not a JSON object"},
		{strings.Repeat("[", 5000), nil, "not a JSON object"},
		{`{"a":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `,"b":"c"}`, map[string]string{"b": "c"}, ""},
	} {
		got, err := userObject([]byte(c.body))
		if c.err != "" {
			var ae *accounts.Error
			if !errors.As(err, &ae) || !strings.Contains(ae.Description, c.err) {
				t.Errorf("%.60s: %v, %v; want %q", c.body, got, err, c.err)
			}
			continue
		}
		if err != nil || len(got) != len(c.want) {
			t.Errorf("%.60s: %v, %v; want %v", c.body, got, err, c.want)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%.60s: %s = %q, want %q", c.body, k, got[k], v)
			}
		}
	}
}

// FuzzUserObject: no body makes the user-object reader panic, and what it
// refuses is always an invalid_request.
func FuzzUserObject(f *testing.F) {
	for _, s := range []string{`{"name":"a","isAdmin":false,"roles":[{"x":1}]}`, `{"a":[}`, `[]`, `{"a":"1","a":"2"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		params, err := userObject(body)
		if err == nil {
			if params == nil {
				t.Fatal("nil params without an error")
			}
			return
		}
		var ae *accounts.Error
		if !errors.As(err, &ae) || ae.Code != accounts.CodeInvalidRequest {
			t.Fatalf("refusal %T: %v", err, err)
		}
	})
}

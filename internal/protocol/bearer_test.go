package protocol

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCredentialCookie(t *testing.T) {
	for _, c := range []struct {
		name              string
		headers           []string
		token             string
		fromCookie, found bool
	}{
		{"cookie", []string{"Cookie", "sess=tok"}, "tok", true, true},
		{"empty cookie", []string{"Cookie", "sess="}, "", false, false},
		{"other cookie", []string{"Cookie", "other=tok"}, "", false, false},
		// Two cookies of the name: present, but no token is picked.
		{"duplicate", []string{"Cookie", "sess=a; sess=b"}, "", true, true},
		{"duplicate fields", []string{"Cookie", "sess=a", "Cookie", "sess=b"}, "", true, true},
		{"duplicate, one empty", []string{"Cookie", "sess=; sess=b"}, "b", true, true},
		{"header wins", []string{"Cookie", "sess=a; sess=b", "Authorization", "Bearer h"}, "h", false, true},
		{"other scheme: no cookie", []string{"Cookie", "sess=a", "Authorization", "Basic x"}, "", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for i := 0; i < len(c.headers); i += 2 {
				r.Header.Add(c.headers[i], c.headers[i+1])
			}
			tok, fromCookie, present, malformed := Credential(r, "sess")
			if tok != c.token || fromCookie != c.fromCookie || present != c.found || malformed {
				t.Fatalf("Credential = %q %v %v %v, want %q %v %v false", tok, fromCookie, present, malformed, c.token, c.fromCookie, c.found)
			}
		})
	}
}

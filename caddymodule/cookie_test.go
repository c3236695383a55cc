package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestStripCookie(t *testing.T) {
	for _, c := range []struct {
		in, want []string // want nil: Cookie deleted
	}{
		{[]string{"sess=abc"}, nil},
		{[]string{"a=1; sess=abc; b=2"}, []string{"a=1; b=2"}},
		{[]string{"sess=abc;b=2", "c=3"}, []string{"b=2", "c=3"}},
		{[]string{"a=1", "sess=x; sess=y"}, []string{"a=1"}},
		{[]string{" sess =abc ; a=1"}, []string{"a=1"}},
		{[]string{"Sess=abc; session=1; xsess=2"}, []string{"Sess=abc; session=1; xsess=2"}},
		{[]string{"sess"}, nil},
	} {
		h := http.Header{"Cookie": slices.Clone(c.in)}
		stripCookie(h, "sess")
		if got, ok := h["Cookie"]; c.want == nil && ok || c.want != nil && !slices.Equal(got, c.want) {
			t.Errorf("stripCookie(%q) = %q, want %q", c.in, got, c.want)
		}
		// Go's parser agrees: no session cookie left.
		r := &http.Request{Header: h}
		if _, err := r.Cookie("sess"); err == nil {
			t.Errorf("%q: Go still reads a sess cookie from %q", c.in, h["Cookie"])
		}
	}
}

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
			tok, fromCookie, present, malformed := credential(r, "sess")
			if tok != c.token || fromCookie != c.fromCookie || present != c.found || malformed {
				t.Fatalf("credential = %q %v %v %v, want %q %v %v false", tok, fromCookie, present, malformed, c.token, c.fromCookie, c.found)
			}
		})
	}
}

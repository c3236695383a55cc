package protocol

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

func TestCORS(t *testing.T) {
	t.Parallel()
	c, err := NewCORS([]string{"http://localhost:3000", "https://app.example.com", "https://[::1]:8443"})
	if err != nil {
		t.Fatal(err)
	}
	methods := []string{http.MethodPost}
	preflight := func(origin string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodOptions, PathToken, nil)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		r.Header.Set("Access-Control-Request-Method", "POST")
		r.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		if !IsPreflight(r) {
			t.Fatal("not a preflight")
		}
		w := httptest.NewRecorder()
		c.Preflight(w, r, methods)
		return w
	}
	for _, origin := range []string{"http://localhost:3000", "https://app.example.com", "https://[::1]:8443"} {
		w := preflight(origin)
		h := w.Header()
		if w.Code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != origin || h.Get("Access-Control-Allow-Credentials") != "true" ||
			h.Get("Access-Control-Allow-Methods") != "POST" || h.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" ||
			h.Get("Access-Control-Max-Age") != "600" || !slices.Contains(h.Values("Vary"), "Origin") {
			t.Errorf("preflight from %s: %d %v", origin, w.Code, h)
		}
	}
	// Anything not exactly an allowed origin: 403 without CORS headers.
	for _, origin := range []string{"", "http://localhost:3001", "https://evil.example.com", "http://app.example.com", "https://APP.example.com", "null", "*"} {
		w := preflight(origin)
		if w.Code != http.StatusForbidden || w.Header().Get("Access-Control-Allow-Origin") != "" || w.Header().Get("Access-Control-Allow-Credentials") != "" ||
			!slices.Contains(w.Header().Values("Vary"), "Origin") {
			t.Errorf("preflight from %q: %d %v", origin, w.Code, w.Header())
		}
	}
	actual := func(origins ...string) http.Header {
		r := httptest.NewRequest(http.MethodPost, PathToken, nil)
		for _, o := range origins {
			r.Header.Add("Origin", o)
		}
		if IsPreflight(r) {
			t.Fatal("a POST is no preflight")
		}
		w := httptest.NewRecorder()
		c.Apply(w, r)
		return w.Header()
	}
	if h := actual("http://localhost:3000"); h.Get("Access-Control-Allow-Origin") != "http://localhost:3000" || h.Get("Access-Control-Allow-Credentials") != "true" ||
		h.Get("Access-Control-Expose-Headers") != "WWW-Authenticate, Retry-After" || h.Get("Vary") != "Origin" {
		t.Errorf("actual request from an allowed origin: %v", h)
	}
	for _, origins := range [][]string{{}, {"https://evil.example.com"}, {"http://localhost:3000", "http://localhost:3000"}} {
		if h := actual(origins...); h.Get("Access-Control-Allow-Origin") != "" || h.Get("Access-Control-Allow-Credentials") != "" || h.Get("Vary") != "Origin" {
			t.Errorf("actual request from %v: %v", origins, h)
		}
	}
	// No cors_origins: no policy, nothing set.
	none, err := NewCORS(nil)
	if err != nil || none != nil {
		t.Fatalf("no origins: %v %v", none, err)
	}
	w := httptest.NewRecorder()
	none.Apply(w, httptest.NewRequest(http.MethodPost, PathToken, nil))
	if len(w.Header()) != 0 {
		t.Fatalf("no policy set %v", w.Header())
	}
}

func TestCORSOrigins(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"*", "null", "localhost:3000", "https://a.example.com/", "https://a.example.com/x", "https://a.example.com?x", "https://a.example.com#x",
		"https://u@a.example.com", "ftp://a.example.com", "https://A.example.com", "https://a.example.com:443", "http://a.example.com:80", ""} {
		if _, err := NewCORS([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

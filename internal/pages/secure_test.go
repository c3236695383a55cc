package pages

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// req is how a request reached Caddy: over TLS or not, from a peer Caddy's
// trusted_proxies trust or not, with the X-Forwarded-Proto it carries.
type req struct {
	tls, trusted bool
	proto        []string // X-Forwarded-Proto fields
}

func (q req) make(method, target string, body *strings.Reader) *http.Request {
	var r *http.Request
	if body != nil {
		r = httptest.NewRequest(method, target, body)
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Sec-Fetch-Site", "same-origin")
	} else {
		r = httptest.NewRequest(method, target, nil)
	}
	if q.tls {
		r.TLS = &tls.ConnectionState{}
	}
	r.Header["X-Forwarded-Proto"] = q.proto
	// As Caddy's server marks every request (caddyhttp.PrepareRequest).
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{
		caddyhttp.TrustedProxyVarKey: q.trusted, caddyhttp.ClientIPVarKey: "192.0.2.1",
	}))
}

// When the session cookie is Secure with the __Host- prefix: cookie_secure
// always and never say so; auto derives it from the configured issuer's
// https scheme, TLS, or a trusted proxy's X-Forwarded-Proto, never from a
// header of a peer Caddy does not trust. The cookie is read under the name
// the same answer implies and no other: a plain-named cookie on an HTTPS
// site (planted by a sibling subdomain or over plain HTTP) is no session,
// nor is a __Host- one on a plain-HTTP site.
func TestCookieSecure(t *testing.T) {
	https := []string{"https"}
	for _, c := range []struct {
		name        string
		mode        string
		httpsIssuer bool
		req         req
		secure      bool
	}{
		{"auto, plain HTTP", "", false, req{}, false},
		{"auto, TLS", "auto", false, req{tls: true}, true},
		{"auto, https issuer, plain request (a TLS-terminating proxy)", "auto", true, req{}, true},
		{"auto, trusted proxy says https", "auto", false, req{trusted: true, proto: https}, true},
		{"auto, trusted proxy, case and spaces", "auto", false, req{trusted: true, proto: []string{" HTTPS "}}, true},
		{"auto, trusted proxy says http", "auto", false, req{trusted: true, proto: []string{"http"}}, false},
		{"auto, trusted proxy appended http to a client's https", "auto", false, req{trusted: true, proto: []string{"https, http"}}, false},
		{"auto, trusted proxy's last field decides", "auto", false, req{trusted: true, proto: []string{"http", "https"}}, true},
		{"auto, untrusted peer claims https", "auto", false, req{proto: https}, false},
		{"auto, no header from a trusted proxy", "auto", false, req{trusted: true}, false},
		{"always, plain HTTP", "always", false, req{}, true},
		{"never, TLS", "never", true, req{tls: true}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPagesWith(t, 10)
			p.CookieSecure, p.SecureIssuer = c.mode, c.httpsIssuer
			name, other := "guestauth_session", "__Host-guestauth_session"
			if c.secure {
				name, other = other, name
			}
			w := httptest.NewRecorder()
			if err := p.Serve(w, c.req.make(http.MethodPost, "http://app.example/auth/guest", strings.NewReader(url.Values{}.Encode()))); err != nil {
				t.Fatal(err)
			}
			cs := w.Result().Cookies()
			if len(cs) != 1 || cs[0].Name != name || cs[0].Secure != c.secure || cs[0].Path != "/" || cs[0].Domain != "" {
				t.Fatalf("cookies set %v, want one named %s, Secure %v", cs, name, c.secure)
			}
			handle := cs[0].Value
			identity := func(cookie string) bool {
				r := c.req.make(http.MethodGet, "http://app.example/app", nil)
				r.Header.Set("Cookie", cookie)
				id, err := p.Identity(httptest.NewRecorder(), r)
				if err != nil {
					t.Fatal(err)
				}
				return id != nil
			}
			if !identity(name + "=" + handle) {
				t.Fatalf("the cookie %s is no session", name)
			}
			if identity(other + "=" + handle) {
				t.Fatalf("the cookie read under %s too", other)
			}
			// Both sent: the implied one counts, the other is ignored.
			if !identity(other + "=forged.x.y; " + name + "=" + handle) {
				t.Fatal("a cookie of the other name spoiled the session")
			}
		})
	}
}

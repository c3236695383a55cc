package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Behind a TLS-terminating proxy (the request reaches Caddy over plain
// HTTP), the session cookie is still Secure with the __Host- prefix when
// the site is HTTPS: its issuer is an https URL, or Caddy's trusted_proxies
// trust the peer that says X-Forwarded-Proto: https. A peer Caddy does not
// trust cannot say so; cookie_secure always and never override.
func TestCookieSecureBehindAProxy(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, config string
		trusted      bool
		proto        string
		secure       bool
	}{
		{"https issuer", "issuer https://app.example", false, "", true},
		{"trusted proxy over https", "", true, "https", true},
		{"untrusted peer claims https", "", false, "https", false},
		{"plain site", "", false, "", false},
		{"http issuer, trusted proxy over https", "issuer http://app.example", true, "https", true},
		{"always", "issuer http://app.example\ncookie_secure_option always", false, "", true},
		{"never", "issuer https://app.example\ncookie_secure_option never", true, "https", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			config, mode, _ := strings.Cut(c.config, "\ncookie_secure_option ")
			block := config + "\nbrowser {\n"
			if mode != "" {
				block += "cookie_secure " + mode + "\n"
			}
			s := newTestSite(t, block+"}")
			r := httptest.NewRequest(http.MethodPost, "http://app.example/auth/guest", strings.NewReader(url.Values{}.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Sec-Fetch-Site", "same-origin")
			if c.proto != "" {
				r.Header.Set("X-Forwarded-Proto", c.proto)
			}
			ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
			ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{caddyhttp.ClientIPVarKey: "192.0.2.1", caddyhttp.TrustedProxyVarKey: c.trusted})
			w := httptest.NewRecorder()
			if err := s.g.ServeHTTP(w, r.WithContext(ctx), caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })); err != nil {
				t.Fatal(err)
			}
			want := "guestauth_session"
			if c.secure {
				want = "__Host-" + want
			}
			cs := w.Result().Cookies()
			if len(cs) != 1 || cs[0].Name != want || cs[0].Secure != c.secure {
				t.Fatalf("cookies %v (raw %q), want %s with Secure %v", cs, w.Header().Values("Set-Cookie"), want, c.secure)
			}
		})
	}
}

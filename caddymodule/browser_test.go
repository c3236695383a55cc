package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestParseBrowserErrors(t *testing.T) {
	for _, src := range []string{
		"guest_auth {\n browser {\n create_guest @page\n }\n}", // no helper: no named matchers
		"guest_auth {\n browser {\n nope x\n }\n}",
		"guest_auth {\n browser {\n cookie_name\n }\n}",
		"guest_auth {\n browser {\n cookie_secure\n }\n}",
		"guest_auth {\n browser {\n cookie_secure auto never\n }\n}",
		"guest_auth {\n browser {\n unconfirmed_guest_ttl soon\n }\n}",
		"guest_auth {\n browser\n browser\n}",
		"guest_auth {\n browser x\n}",
	} {
		g := new(GuestAuth)
		if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err == nil {
			t.Errorf("%q parsed", src)
		}
	}
}

func TestBrowserValidate(t *testing.T) {
	for name, b := range map[string]Browser{
		"prefix":      {PagesPrefix: "auth/"},
		"cookie":      {CookieName: "a b"},
		"host prefix": {CookieName: "__Host-x"},
		"secure":      {CookieSecure: "sometimes"},
	} {
		g := &GuestAuth{Browser: &b}
		g.setDefaults()
		if err := g.Validate(); err == nil {
			t.Errorf("%s: %+v validated", name, b)
		}
	}
	g := &GuestAuth{Browser: &Browser{}, Cookie: "sess"}
	g.setDefaults()
	if err := g.Validate(); err == nil {
		t.Error("cookie and browser together validated")
	}
	g = &GuestAuth{Browser: &Browser{}}
	g.setDefaults()
	if err := g.Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func TestAssertionValidate(t *testing.T) {
	for _, life := range []time.Duration{time.Millisecond, 61 * time.Second} {
		g := &GuestAuth{Assertion: &Assertion{Lifetime: caddy.Duration(life)}}
		g.setDefaults()
		if err := g.Validate(); err == nil {
			t.Errorf("assertion lifetime %v validated", life)
		}
	}
	g := &GuestAuth{Assertion: &Assertion{Header: "x-app-assertion"}, Browser: &Browser{MergedHeader: "X-App-Merged"}}
	g.setDefaults()
	if err := g.Validate(); err != nil || g.Assertion.Lifetime != caddy.Duration(time.Minute) {
		t.Fatalf("defaults: %v %v", err, g.Assertion.Lifetime)
	}
	// Both headers are in the strip set: a client can never send them.
	g.prepareHeaders()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-App-Assertion", "forged")
	r.Header.Set("X_App_Merged", "forged")
	g.headers.Strip(r)
	if len(r.Header) != 0 {
		t.Fatalf("kept %v", r.Header)
	}
}

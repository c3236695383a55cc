package caddymodule

import (
	"strings"
	"testing"
)

// The browser block's site_name and home: what is refused at load, with
// its text, and the limits that are accepted.
func TestBrowserSiteConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ config, err string }{
		{"browser {\n site_name\n}", "wrong argument count"},
		{"browser {\n home / /app\n}", "wrong argument count"},
		{"browser {\n site_name \"" + strings.Repeat("a", 101) + "\"\n}", "browser site_name must be at most 100 characters"},
		{`{"browser": {"site_name": "Acme\nShop"}}`, "none of them a control character"},
		{"browser {\n home app\n}", `browser home "app" must be a path of this site (/...) or an absolute http(s) URL`},
		{"browser {\n home //evil.example/\n}", "must be a path of this site"},
		{"browser {\n home /\\\\evil.example\n}", "must be a path of this site"},
		{"browser {\n home javascript:alert(1)\n}", "must be a path of this site"},
		{"browser {\n home https://\n}", "must be a path of this site"},
		{"browser {\n home https://user@app.example/\n}", "must be a path of this site"},
		{`{"browser": {"home": "/app\r\nX: y"}}`, "must be a path of this site"},
	} {
		err := checkConfig(c.config)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q:\n got error %v\nwant one containing %q", c.config, err, c.err)
		}
	}
	for _, config := range []string{
		"browser {\n site_name \"Acme Shop · Beta\"\n home /app/?from=auth\n}",
		"browser {\n site_name \"" + strings.Repeat("a", 100) + "\"\n}",
		"browser {\n home https://app.example.com/start\n}",
		"browser {\n home http://localhost:3000\n}",
		"browser\n",
	} {
		if err := checkConfig(config); err != nil {
			t.Errorf("%q: %v", config, err)
		}
	}
}

// browser admins: usernames, checked at load.
func TestBrowserAdminsRefused(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"browser {\n admins\n}", "wrong argument count"},
		{"browser {\n admins guest_x\n}", "browser admins: \"guest_x\" is not a username"},
		{`{"browser": {"admins": ["a b"]}}`, "is not a username"},
	} {
		if err := checkConfig(c.in); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got error %v\nwant one containing %q", c.in, err, c.want)
		}
	}
}

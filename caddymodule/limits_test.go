package caddymodule

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The defaults bound what an anonymous client can make the site store.
func TestLimitDefaults(t *testing.T) {
	t.Parallel()
	g := new(GuestAuth)
	g.setDefaults()
	for name, tc := range map[string]struct {
		got  *RateLimit
		want RateLimit
	}{
		"guest_limit global":     {g.GuestLimitGlobal, RateLimit{100, caddy.Duration(100 * time.Millisecond)}},
		"guest_limit ip":         {g.GuestLimitIP, RateLimit{30, caddy.Duration(time.Minute)}},
		"challenge_limit ip":     {g.ChallengeLimitIP, RateLimit{60, caddy.Duration(time.Second)}},
		"challenge_limit global": {g.ChallengeLimitGlobal, RateLimit{200, caddy.Duration(50 * time.Millisecond)}},
	} {
		if *tc.got != tc.want {
			t.Errorf("%s = %+v, want %+v", name, *tc.got, tc.want)
		}
	}
	if *g.MaxLiveGuests != 100_000 || g.IPPrefixV4 != 32 || g.IPPrefixV6 != 64 || g.APIReadTimeout != caddy.Duration(10*time.Second) {
		t.Errorf("max_live_guests %d, ip prefixes /%d /%d, api_read_timeout %v", *g.MaxLiveGuests, g.IPPrefixV4, g.IPPrefixV6, g.APIReadTimeout)
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestCaddyfileLimitOptions(t *testing.T) {
	t.Parallel()
	g := new(GuestAuth)
	err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`guest_auth {
		max_live_guests 0
		challenge_limit ip 5 2s
		challenge_limit global 50 1s
		ip_key_prefix 24 56
		api_read_timeout 3s
	}`))
	if err != nil {
		t.Fatal(err)
	}
	g.setDefaults()
	if *g.MaxLiveGuests != 0 || *g.ChallengeLimitIP != (RateLimit{5, caddy.Duration(2 * time.Second)}) ||
		*g.ChallengeLimitGlobal != (RateLimit{50, caddy.Duration(time.Second)}) || g.IPPrefixV4 != 24 || g.IPPrefixV6 != 56 ||
		g.APIReadTimeout != caddy.Duration(3*time.Second) {
		t.Fatalf("parsed %+v", g)
	}
	for _, bad := range []string{"ip_key_prefix 24", "ip_key_prefix x 64", "challenge_limit both 1 1s"} {
		if err := new(GuestAuth).UnmarshalCaddyfile(caddyfile.NewTestDispenser("guest_auth {\n" + bad + "\n}")); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, bad := range []struct{ v4, v6 int }{{33, 64}, {32, 129}, {-1, 64}} {
		g := &GuestAuth{IPPrefixV4: bad.v4, IPPrefixV6: bad.v6}
		g.setDefaults()
		if err := g.Validate(); err == nil {
			t.Errorf("prefixes /%d /%d accepted", bad.v4, bad.v6)
		}
	}
}

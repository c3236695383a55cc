package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
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
		"guest_limit global":     {g.Limits.GuestGlobal, RateLimit{100, caddy.Duration(100 * time.Millisecond)}},
		"guest_limit ip":         {g.Limits.GuestIP, RateLimit{30, caddy.Duration(time.Minute)}},
		"challenge_limit ip":     {g.Limits.ChallengeIP, RateLimit{60, caddy.Duration(time.Second)}},
		"challenge_limit global": {g.Limits.ChallengeGlobal, RateLimit{200, caddy.Duration(50 * time.Millisecond)}},
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
	if *g.MaxLiveGuests != 0 || *g.Limits.ChallengeIP != (RateLimit{5, caddy.Duration(2 * time.Second)}) ||
		*g.Limits.ChallengeGlobal != (RateLimit{50, caddy.Duration(time.Second)}) || g.IPPrefixV4 != 24 || g.IPPrefixV6 != 56 ||
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

// The limits' former flat JSON names still load, to the same effective
// limits as the grouped `limits` object; a limit set both ways is refused.
func TestFlatLimitsJSONCompat(t *testing.T) {
	t.Parallel()
	names := [][2]string{ // the flat name, the name in limits
		{"signin_account_limit", "signin_account"}, {"signin_device_limit", "signin_device"},
		{"signin_hash_limit", "signin_hashes"}, {"signin_ip_limit", "signin_ip"},
		{"guest_limit_ip", "guest_ip"}, {"guest_limit_global", "guest_global"},
		{"name_change_user_limit", "name_change_user"}, {"name_change_ip_limit", "name_change_ip"},
		{"challenge_limit_ip", "challenge_ip"}, {"challenge_limit_global", "challenge_global"},
	}
	var flat, grouped []string
	for i, n := range names {
		l := fmt.Sprintf(`{"burst": %d, "interval": "%ds"}`, i+1, i+2) // unlike every default
		flat = append(flat, fmt.Sprintf("%q: %s", n[0], l))
		grouped = append(grouped, fmt.Sprintf("%q: %s", n[1], l))
	}
	load := func(config string) *GuestAuth {
		t.Helper()
		g := new(GuestAuth)
		if err := json.Unmarshal([]byte(config), g); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		if _, err := g.prepare(ctx); err != nil {
			t.Fatal(err)
		}
		if err := g.Validate(); err != nil {
			t.Fatal(err)
		}
		return g
	}
	old := load("{" + strings.Join(flat, ", ") + "}")
	cur := load(`{"limits": {` + strings.Join(grouped, ", ") + "}}")
	if !reflect.DeepEqual(old.Limits, cur.Limits) {
		t.Fatalf("flat JSON loads to %s,\ngrouped JSON to %s", mustJSON(t, old.Limits), mustJSON(t, cur.Limits))
	}
	if *old.Limits.ChallengeGlobal != (RateLimit{10, caddy.Duration(11 * time.Second)}) || *old.Limits.SignInAccount != (RateLimit{1, caddy.Duration(2 * time.Second)}) {
		t.Fatalf("flat JSON loads to %s", mustJSON(t, old.Limits))
	}
	// Mixed: a flat limit fills the group where it leaves that limit unset.
	mixed := load(`{"guest_limit_ip": {"burst": 7, "interval": "1s"}, "limits": {"guest_global": {"burst": 8, "interval": "1s"}}}`)
	if mixed.Limits.GuestIP.Burst != 7 || mixed.Limits.GuestGlobal.Burst != 8 || mixed.Limits.SignInAccount.Burst != 5 {
		t.Fatalf("mixed JSON loads to %s", mustJSON(t, mixed.Limits))
	}
	for _, n := range names {
		config := fmt.Sprintf(`{%q: {"burst": 1, "interval": "1s"}, "limits": {%q: {"burst": 2, "interval": "1s"}}}`, n[0], n[1])
		want := fmt.Sprintf("limits.%s and %s are both set", n[1], n[0])
		if err := checkConfig(config); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", config, err, want)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package caddymodule

import (
	"slices"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

func parseGuestAuth(t *testing.T, input string) (*GuestAuth, error) {
	t.Helper()
	g := new(GuestAuth)
	err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return g, err
}

func TestNameOptionsCaddyfile(t *testing.T) {
	g, err := parseGuestAuth(t, `guest_auth {
		name_change_limit user 3 1m
		name_change_limit ip 10 30s
		reserved_names default acme
		reserved_names Acme-Support
	}`)
	if err != nil {
		t.Fatal(err)
	}
	if *g.Limits.NameChangeUser != (RateLimit{Burst: 3, Interval: caddy.Duration(time.Minute)}) ||
		*g.Limits.NameChangeIP != (RateLimit{Burst: 10, Interval: caddy.Duration(30 * time.Second)}) {
		t.Fatalf("limits: %+v %+v", g.Limits.NameChangeUser, g.Limits.NameChangeIP)
	}
	if !slices.Equal(g.ReservedNames, []string{"default", "acme", "Acme-Support"}) {
		t.Fatalf("reserved_names: %v", g.ReservedNames)
	}
	got := accounts.ExpandReservedNames(g.ReservedNames)
	if len(got) != len(accounts.DefaultReservedNames)+2 || !slices.Contains(got, "admin") || !slices.Contains(got, "Acme-Support") {
		t.Fatalf("expanded: %v", got)
	}
	for _, bad := range []string{
		"guest_auth {\n name_change_limit account 3 1m\n}",
		"guest_auth {\n name_change_limit user 3\n}",
		"guest_auth {\n reserved_names\n}",
	} {
		if _, err := parseGuestAuth(t, bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestNameOptionDefaults(t *testing.T) {
	g := new(GuestAuth)
	g.setDefaults()
	if *g.Limits.NameChangeUser != (RateLimit{Burst: 5, Interval: caddy.Duration(2 * time.Minute)}) ||
		*g.Limits.NameChangeIP != (RateLimit{Burst: 30, Interval: caddy.Duration(20 * time.Second)}) {
		t.Fatalf("default limits: %+v %+v", g.Limits.NameChangeUser, g.Limits.NameChangeIP)
	}
	if !slices.Equal(accounts.ExpandReservedNames(nil), accounts.DefaultReservedNames) {
		t.Fatal("unset reserved_names is not the built-in list")
	}
	if got := accounts.ExpandReservedNames([]string{"off"}); len(got) != 0 {
		t.Fatalf("off: %v", got)
	}
	if err := g.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	for _, bad := range [][]string{{"off", "acme"}, {" "}} {
		g.ReservedNames = bad
		if err := g.Validate(); err == nil {
			t.Errorf("accepted reserved_names %q", bad)
		}
	}
	g.ReservedNames = nil
	g.Limits.NameChangeIP = &RateLimit{Burst: 3}
	if err := g.Validate(); err == nil {
		t.Error("accepted a limit without an interval")
	}
}

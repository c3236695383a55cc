package caddymodule_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/caddymodule"
)

func TestCaddyfileSignInLimits(t *testing.T) {
	t.Parallel()
	d := caddyfile.NewTestDispenser(`guest_auth {
		signin_limit account 3 2m
		signin_limit device 7 30s
		signin_limit hashes 12 15s
		signin_limit ip 40 5s
		max_sessions_per_user 4
	}`)
	var g caddymodule.GuestAuth
	if err := g.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		got   *caddymodule.RateLimit
		burst int
		every time.Duration
	}{
		"account": {g.Limits.SignInAccount, 3, 2 * time.Minute},
		"device":  {g.Limits.SignInDevice, 7, 30 * time.Second},
		"hashes":  {g.Limits.SignInHashes, 12, 15 * time.Second},
		"ip":      {g.Limits.SignInIP, 40, 5 * time.Second},
	} {
		if c.got == nil || c.got.Burst != c.burst || c.got.Interval != caddy.Duration(c.every) {
			t.Fatalf("signin_limit %s = %+v", name, c.got)
		}
	}
	if g.MaxSessionsPerUser == nil || *g.MaxSessionsPerUser != 4 {
		t.Fatalf("max_sessions_per_user = %v", g.MaxSessionsPerUser)
	}
	raw, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"limits":{"signin_account":{"burst":3`, `"signin_device":{"burst":7`, `"signin_hashes":{"burst":12`, `"max_sessions_per_user":4`} {
		if !strings.Contains(string(raw), field) {
			t.Fatalf("JSON config lacks %s: %s", field, raw)
		}
	}

	// 0 is an explicit "no cap", kept apart from "unset" (the default).
	var g0 caddymodule.GuestAuth
	if err := g0.UnmarshalCaddyfile(caddyfile.NewTestDispenser("guest_auth {\n max_sessions_per_user 0\n}")); err != nil || g0.MaxSessionsPerUser == nil || *g0.MaxSessionsPerUser != 0 {
		t.Fatalf("max_sessions_per_user 0: %v %v", g0.MaxSessionsPerUser, err)
	}
	for _, bad := range []string{
		"signin_limit sessions 3 1m",
		"signin_limit device 3",
		"max_sessions_per_user many",
		"max_sessions_per_user",
	} {
		var gb caddymodule.GuestAuth
		if err := gb.UnmarshalCaddyfile(caddyfile.NewTestDispenser("guest_auth {\n" + bad + "\n}")); err == nil {
			t.Fatalf("%q was accepted", bad)
		}
	}
}

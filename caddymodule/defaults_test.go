package caddymodule

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// TestExplicitZeroKept: an option whose 0 means something (no skew, no
// cache, no expiry) keeps it; only an unset one takes the default.
func TestExplicitZeroKept(t *testing.T) {
	parse := func(t *testing.T, block string) *GuestAuth {
		t.Helper()
		g := new(GuestAuth)
		if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("guest_auth {\n" + block + "\n}")); err != nil {
			t.Fatal(err)
		}
		g.setDefaults()
		return g
	}
	fromJSON := func(t *testing.T, js string) *GuestAuth {
		t.Helper()
		g := new(GuestAuth)
		if err := json.Unmarshal([]byte(js), g); err != nil {
			t.Fatal(err)
		}
		g.setDefaults()
		return g
	}
	check := func(t *testing.T, g *GuestAuth, skew time.Duration, cache int, ttl time.Duration) {
		t.Helper()
		if got := time.Duration(*g.ClockSkew); got != skew {
			t.Errorf("clock_skew = %v, want %v", got, skew)
		}
		if *g.TokenCacheSize != cache {
			t.Errorf("token_cache_size = %d, want %d", *g.TokenCacheSize, cache)
		}
		if got := time.Duration(*g.GuestTTL); got != ttl {
			t.Errorf("guest_ttl = %v, want %v", got, ttl)
		}
		if err := g.Validate(); err != nil {
			t.Errorf("Validate: %v", err)
		}
	}
	t.Run("caddyfile zero", func(t *testing.T) {
		check(t, parse(t, "clock_skew 0s\ntoken_cache_size 0\nguest_ttl 0"), 0, 0, 0)
	})
	t.Run("caddyfile set", func(t *testing.T) {
		check(t, parse(t, "clock_skew 1m\ntoken_cache_size 5\nguest_ttl 1h"), time.Minute, 5, time.Hour)
	})
	t.Run("caddyfile unset", func(t *testing.T) {
		check(t, parse(t, ""), 30*time.Second, tokens.DefaultCacheSize, 720*time.Hour)
	})
	t.Run("json zero", func(t *testing.T) {
		check(t, fromJSON(t, `{"clock_skew":0,"token_cache_size":0,"guest_ttl":0}`), 0, 0, 0)
	})
	t.Run("json unset", func(t *testing.T) {
		check(t, fromJSON(t, `{}`), 30*time.Second, tokens.DefaultCacheSize, 720*time.Hour)
	})
	t.Run("json round trip", func(t *testing.T) {
		// Caddy adapts a Caddyfile to JSON: the explicit 0 must survive.
		g := new(GuestAuth)
		if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("guest_auth {\nclock_skew 0s\n}")); err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(g)
		if err != nil {
			t.Fatal(err)
		}
		check(t, fromJSON(t, string(js)), 0, tokens.DefaultCacheSize, 720*time.Hour)
	})
	t.Run("out of range", func(t *testing.T) {
		d := caddy.Duration(6 * time.Minute)
		g := &GuestAuth{ClockSkew: &d}
		g.setDefaults()
		if err := g.Validate(); err == nil {
			t.Fatal("clock_skew 6m accepted")
		}
	})
}

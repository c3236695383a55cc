package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The module guest_auth.storage.postgres: registered under its kind, it
// reads `postgres <dsn> { options }`, resolves the DSN's placeholder when
// provisioned, checks its options, and names its store without the
// password.
func TestModule(t *testing.T) {
	info, err := caddy.GetModule("guest_auth.storage.postgres")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.New().(*Module); !ok {
		t.Fatalf("guest_auth.storage.postgres makes a %T", info.New())
	}

	const secret = "pa55-w0rd"
	t.Setenv("GA_TEST_DSN", "postgres://auth:"+secret+"@db.example:5433/guests?sslmode=verify-full")
	var m Module
	if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser("postgres {env.GA_TEST_DSN} {\nmax_conns 7\nstatement_timeout 2s\nskip_migrate\nsync_interval 1s\nmax_staleness 9s\n}")); err != nil {
		t.Fatal(err)
	}
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if m.DSN != "{env.GA_TEST_DSN}" || !strings.Contains(m.dsn, secret) || m.MaxConns != 7 || m.StatementTimeout != caddy.Duration(2*time.Second) ||
		!m.SkipMigrate || m.SyncInterval != caddy.Duration(time.Second) || m.MaxStaleness != caddy.Duration(9*time.Second) {
		t.Fatalf("read and resolved: %+v", m)
	}
	if k := m.StoreKey(); k != "postgres:postgres://auth@db.example:5433/guests" {
		t.Fatalf("store key %q", k)
	}
	unparsable := Module{dsn: "postgres://u:" + secret + "@h:bad/db"}
	if k := unparsable.StoreKey(); strings.Contains(k, secret) {
		t.Fatalf("an unparsable DSN's store key shows the password: %q", k)
	}

	for _, c := range []struct {
		m    Module
		want string
	}{
		{Module{}, "needs a dsn"},
		{Module{DSN: "{env.GA_UNSET_DSN}"}, "needs a dsn"},
		{Module{DSN: "x", MaxConns: -1}, "cannot be negative"},
		{Module{DSN: "x", MaxStaleness: -1}, "cannot be negative"},
	} {
		if err := c.m.Provision(caddy.Context{}); err != nil {
			t.Fatal(err)
		}
		if err := c.m.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: %v, want %q", c.m, err, c.want)
		}
	}
	for bad, want := range map[string]string{
		"postgres":                             "wrong argument count",
		"postgres a b":                         "wrong argument count",
		"postgres x {\nmax_conns 0\n}":         "max_conns must be a positive number",
		"postgres x {\nsync_interval 0s\n}":    "sync_interval must be a positive duration",
		"postgres x {\nskip_migrate yes\n}":    "wrong argument count",
		"postgres x {\npool 3\n}":              `unknown postgres storage option "pool"`,
		"postgres x {\nstatement_timeout 1\n}": "statement_timeout must be a positive duration",
	} {
		var m Module
		if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%q: %v, want %q", bad, err, want)
		}
	}
}

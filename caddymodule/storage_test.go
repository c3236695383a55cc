package caddymodule

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
)

// boltStorage is the storage option naming a bbolt file.
func boltStorage(path string) StorageConfig {
	return StorageConfig{BackendRaw: caddyconfig.JSONModuleObject(bolt.Module{Path: path}, "kind", storage.KindBolt, nil)}
}

// loadStorage loads c's module as Provision does.
func loadStorage(t *testing.T, c StorageConfig) (storage.Module, error) {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return c.load(ctx)
}

// Both JSON forms read, and marshal again as they were written: a bbolt
// store of only a path as the plain string, any other as its module's
// object; an object without kind is a bbolt one, as it always was.
func TestStorageConfigJSON(t *testing.T) {
	for _, c := range []struct{ in, out string }{
		{`"/var/lib/g.db"`, `"/var/lib/g.db"`},
		{`""`, `""`},
		{`{"kind": "bolt", "path": "/var/lib/g.db"}`, `"/var/lib/g.db"`},
		{`{"path": "rel.db"}`, `"rel.db"`},
		{`{"kind": "postgres", "dsn": "{env.DB}", "max_conns": 3}`, `{"dsn":"{env.DB}","kind":"postgres","max_conns":3}`},
	} {
		var g struct {
			Storage StorageConfig `json:"storage,omitzero"`
		}
		if err := json.Unmarshal([]byte(`{"storage": `+c.in+`}`), &g); err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		out, err := json.Marshal(g.Storage)
		if err != nil || string(out) != c.out {
			t.Fatalf("%s: marshalled to %s, %v; want %s", c.in, out, err, c.out)
		}
	}
	for bad, want := range map[string]string{
		`{"kind": "mysql", "path": "x"}`: `unknown storage kind "mysql" (known: bolt, postgres)`,
		`42`:                             "want a bbolt file path",
		`["/x"]`:                         "want a bbolt file path",
		`{"kind": 7}`:                    "kind",
	} {
		var s StorageConfig
		if err := json.Unmarshal([]byte(bad), &s); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: %v, want an error containing %q", bad, err, want)
		}
	}
	// A config without storage marshals without it.
	out, err := json.Marshal(GuestAuth{})
	if err != nil || strings.Contains(string(out), "storage") {
		t.Fatalf("empty config: %s, %v", out, err)
	}
}

// Each form loads its kind's module, provisioned and validated; the
// modules' own tests (options, keys, secrets) are in storage/bolt and
// storage/postgres.
func TestStorageModules(t *testing.T) {
	sb, err := loadStorage(t, boltStorage("rel/g.db"))
	abs, _ := filepath.Abs("rel/g.db")
	if _, ok := sb.(*bolt.Module); err != nil || !ok || sb.StoreKey() != abs {
		t.Fatalf("relative path: %#v, %v; want a bolt module with key %s", sb, err, abs)
	}
	sb, err = loadStorage(t, StorageConfig{})
	if _, ok := sb.(*bolt.Module); err != nil || !ok || sb.StoreKey() != filepath.Join(caddy.AppDataDir(), "guest_auth", "guestauth.db") {
		t.Fatalf("default: %#v, %v", sb, err)
	}

	t.Setenv("GA_TEST_DSN", "postgres://auth:pa55-w0rd@db.example:5433/guests?sslmode=verify-full")
	var c StorageConfig
	if err := json.Unmarshal([]byte(`{"kind": "postgres", "dsn": "{env.GA_TEST_DSN}", "max_conns": 7, "statement_timeout": "2s", "skip_migrate": true, "sync_interval": "1s", "max_staleness": "9s"}`), &c); err != nil {
		t.Fatal(err)
	}
	sb, err = loadStorage(t, c)
	if err != nil {
		t.Fatal(err)
	}
	pg, ok := sb.(*postgres.Module)
	if !ok || pg.MaxConns != 7 || pg.StatementTimeout != caddy.Duration(2*time.Second) || !pg.SkipMigrate ||
		pg.SyncInterval != caddy.Duration(time.Second) || pg.MaxStaleness != caddy.Duration(9*time.Second) {
		t.Fatalf("loaded: %#v", sb)
	}
	if k := sb.StoreKey(); k != "postgres:postgres://auth@db.example:5433/guests" {
		t.Fatalf("store key %q (the placeholder resolved when provisioned)", k)
	}
	for raw, want := range map[string]string{
		`{"kind": "postgres"}`:                              "needs a dsn",
		`{"kind": "postgres", "dsn": "{env.GA_UNSET_DSN}"}`: "needs a dsn",
		`{"kind": "postgres", "path": "/x.db"}`:             `unknown field "path"`,
		`{"kind": "postgres", "dsn": "x", "max_conns": -1}`: "cannot be negative",
		`{"path": "/x.db", "max_conns": 3}`:                 `unknown field "max_conns"`,
		`{"kind": "bolt", "dsn": "postgres://x"}`:           `unknown field "dsn"`,
	} {
		var c StorageConfig
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			t.Fatal(err)
		}
		if _, err := loadStorage(t, c); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: err = %v, want %q", raw, err, want)
		}
	}
}

func TestCaddyfileStorage(t *testing.T) {
	for _, c := range []struct {
		line string
		want string // the storage option's JSON
		err  string
	}{
		{"storage /data/g.db", `"/data/g.db"`, ""},
		{"storage bolt /data/g.db", `"/data/g.db"`, ""},
		{"storage bolt", `"bolt"`, ""}, // one argument is always a path, as before
		{"storage postgres postgres://db/auth", `{"dsn":"postgres://db/auth","kind":"postgres"}`, ""},
		{"storage postgres {env.DB} {\nmax_conns 8\nstatement_timeout 2s\nskip_migrate\nsync_interval 100ms\nmax_staleness 3s\n}",
			`{"dsn":"{env.DB}","kind":"postgres","max_conns":8,"max_staleness":3000000000,"skip_migrate":true,"statement_timeout":2000000000,"sync_interval":100000000}`, ""},
		{"storage postgres x {\nmax_staleness -1s\n}", "", "max_staleness must be a positive duration"},
		{"storage postgres x {\nmax_conns 0\n}", "", "max_conns must be a positive number"},
		{"storage postgres x {\nstatement_timeout soon\n}", "", "statement_timeout must be a positive duration"},
		{"storage postgres x {\nskip_migrate yes\n}", "", "wrong argument count"},
		{"storage postgres x {\npool 3\n}", "", `unknown postgres storage option "pool"`},
		{"storage postgres a b", "", "wrong argument count"},
		{"storage mysql x", "", `unknown storage kind "mysql" (known: bolt, postgres)`},
		{"storage", "", "wrong argument count"},
		{"storage bolt /a /b", "", "wrong argument count"},
	} {
		var g GuestAuth
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("guest_auth {\n" + c.line + "\nissuer https://a.example\n}"))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("%q: err = %v, want %q", c.line, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if out, _ := json.Marshal(g.Storage); string(out) != c.want {
			t.Fatalf("%q: %s; want %s", c.line, out, c.want)
		}
		if g.Issuer != "https://a.example" {
			t.Fatalf("%q: the option after storage was not read (issuer %q)", c.line, g.Issuer)
		}
	}
}

// The admin API's storage parameter names a store by its key: a bbolt
// file's path (resolved), or another kind's "<kind>:<location>" as it is.
func TestAdminStoreByPoolKey(t *testing.T) {
	sb, err := loadStorage(t, boltStorage(filepath.Join(t.TempDir(), "k.db")))
	if err != nil {
		t.Fatal(err)
	}
	const key = "otherkind:db.example/auth"
	sh, err := openShared(context.Background(), key, sb.OpenStore)
	if err != nil {
		t.Fatal(err)
	}
	defer storePool.Delete(key)
	if got, err := adminStore(key); err != nil || got != sh {
		t.Fatalf("adminStore(%q) = %p, %v; want %p", key, got, err, sh)
	}
	if got, err := adminStore(""); err != nil || got != sh {
		t.Fatalf("the only open store: %p, %v", got, err)
	}
	if _, err := adminStore("otherkind:elsewhere"); err == nil {
		t.Fatal("an unknown key found a store")
	}
}

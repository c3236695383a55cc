package caddymodule

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/storage"
)

// Every backend provides what this package needs.
func TestBackendImplementsModuleStore(t *testing.T) {
	var _ store = storage.Backend(nil)
}

func TestStorageConfigJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want StorageConfig
		out  string // marshalled again
	}{
		{`"/var/lib/g.db"`, StorageConfig{Path: "/var/lib/g.db"}, `"/var/lib/g.db"`},
		{`""`, StorageConfig{}, `""`},
		{`{"kind": "bolt", "path": "/var/lib/g.db"}`, StorageConfig{Kind: "bolt", Path: "/var/lib/g.db"}, `"/var/lib/g.db"`},
		{`{"path": "rel.db"}`, StorageConfig{Path: "rel.db"}, `"rel.db"`},
		{`{"kind": "postgres", "path": "x"}`, StorageConfig{Kind: "postgres", Path: "x"}, `{"kind":"postgres","path":"x"}`},
	} {
		var g struct {
			Storage StorageConfig `json:"storage,omitzero"`
		}
		if err := json.Unmarshal([]byte(`{"storage": `+c.in+`}`), &g); err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if g.Storage != c.want {
			t.Fatalf("%s: got %+v, want %+v", c.in, g.Storage, c.want)
		}
		out, err := json.Marshal(g.Storage)
		if err != nil || string(out) != c.out {
			t.Fatalf("%s: marshalled to %s, %v; want %s", c.in, out, err, c.out)
		}
	}
	for _, bad := range []string{`{"kind": "bolt", "file": "/x"}`, `42`, `["/x"]`} {
		var s StorageConfig
		if err := json.Unmarshal([]byte(bad), &s); err == nil {
			t.Fatalf("%s was accepted as %+v", bad, s)
		}
	}
	// A config without storage marshals without it.
	out, err := json.Marshal(GuestAuth{})
	if err != nil || strings.Contains(string(out), "storage") {
		t.Fatalf("empty config: %s, %v", out, err)
	}
}

func TestStorageConfigResolve(t *testing.T) {
	repl := caddy.NewReplacer()
	cfg, err := StorageConfig{Path: "rel/g.db"}.resolve(repl)
	abs, _ := filepath.Abs("rel/g.db")
	if err != nil || cfg.Kind != storage.KindBolt || cfg.Location != abs || cfg.LockTimeout != lockTimeout {
		t.Fatalf("relative path: %+v, %v", cfg, err)
	}
	if poolKey(cfg) != abs {
		t.Fatalf("a bolt store's pool key is %q, want its absolute path", poolKey(cfg))
	}
	cfg, err = StorageConfig{Kind: "bolt"}.resolve(repl)
	if err != nil || cfg.Location != filepath.Join(caddy.AppDataDir(), "guest_auth", "guestauth.db") {
		t.Fatalf("default path: %+v, %v", cfg, err)
	}
	if _, err := (StorageConfig{Kind: "nosuch", Path: "x"}).resolve(repl); err == nil || !strings.Contains(err.Error(), `unknown storage kind "nosuch"`) {
		t.Fatalf("unknown kind: %v", err)
	}
	if k := poolKey(storage.Config{Kind: "otherkind", Location: "db.example:5432/auth"}); k != "otherkind:db.example:5432/auth" {
		t.Fatalf("pool key of another kind: %q", k)
	}
}

// PostgreSQL: the DSN comes through placeholders; the pool key (shown in
// errors and the admin API) never holds the password; bbolt refuses the
// postgres options and postgres a path.
func TestStorageConfigResolvePostgres(t *testing.T) {
	const secret = "pa55-w0rd"
	t.Setenv("GA_TEST_DSN", "postgres://auth:"+secret+"@db.example:5433/guests?sslmode=verify-full")
	repl := caddy.NewReplacer()
	cfg, err := StorageConfig{Kind: "postgres", DSN: "{env.GA_TEST_DSN}", MaxConns: 7, StatementTimeout: caddy.Duration(2 * time.Second), SkipMigrate: true,
		SyncInterval: caddy.Duration(time.Second), MaxStaleness: caddy.Duration(9 * time.Second)}.resolve(repl)
	if err != nil || cfg.Kind != "postgres" || !strings.Contains(cfg.Location, secret) || cfg.MaxConns != 7 || cfg.StatementTimeout != 2*time.Second || !cfg.SkipMigrate ||
		cfg.SyncInterval != time.Second || cfg.MaxStaleness != 9*time.Second {
		t.Fatalf("resolved: %+v, %v", cfg, err)
	}
	if k := poolKey(cfg); k != "postgres:postgres://auth@db.example:5433/guests" {
		t.Fatalf("pool key %q", k)
	}
	for _, c := range []struct {
		cfg  StorageConfig
		want string
	}{
		{StorageConfig{Kind: "postgres"}, "needs a dsn"},
		{StorageConfig{Kind: "postgres", DSN: "{env.GA_UNSET_DSN}"}, "needs a dsn"},
		{StorageConfig{Kind: "postgres", Path: "/x.db"}, "takes a dsn, not a path"},
		{StorageConfig{Kind: "postgres", DSN: "x", MaxConns: -1}, "cannot be negative"},
		{StorageConfig{Path: "/x.db", MaxConns: 3}, "options of postgres storage"},
		{StorageConfig{Path: "/x.db", MaxStaleness: 3}, "options of postgres storage"},
		{StorageConfig{Kind: "bolt", DSN: "postgres://x"}, "options of postgres storage"},
	} {
		if _, err := c.cfg.resolve(repl); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: err = %v, want %q", c.cfg, err, c.want)
		}
	}
	if k := poolKey(storage.Config{Kind: "postgres", Location: "postgres://u:" + secret + "@h:bad/db"}); strings.Contains(k, secret) {
		t.Fatalf("an unparsable DSN's pool key shows the password: %q", k)
	}
}

func TestCaddyfileStorage(t *testing.T) {
	for _, c := range []struct {
		line string
		want StorageConfig
		err  string
	}{
		{"storage /data/g.db", StorageConfig{Path: "/data/g.db"}, ""},
		{"storage bolt /data/g.db", StorageConfig{Kind: "bolt", Path: "/data/g.db"}, ""},
		{"storage bolt", StorageConfig{Path: "bolt"}, ""}, // one argument is always a path, as before
		{"storage postgres postgres://db/auth", StorageConfig{Kind: "postgres", DSN: "postgres://db/auth"}, ""},
		{"storage postgres {env.DB} {\nmax_conns 8\nstatement_timeout 2s\nskip_migrate\nsync_interval 100ms\nmax_staleness 3s\n}",
			StorageConfig{Kind: "postgres", DSN: "{env.DB}", MaxConns: 8, StatementTimeout: caddy.Duration(2 * time.Second), SkipMigrate: true,
				SyncInterval: caddy.Duration(100 * time.Millisecond), MaxStaleness: caddy.Duration(3 * time.Second)}, ""},
		{"storage postgres x {\nmax_staleness -1s\n}", StorageConfig{}, "max_staleness must be a positive duration"},
		{"storage postgres x {\nmax_conns 0\n}", StorageConfig{}, "max_conns must be a positive number"},
		{"storage postgres x {\nstatement_timeout soon\n}", StorageConfig{}, "statement_timeout must be a positive duration"},
		{"storage postgres x {\nskip_migrate yes\n}", StorageConfig{}, "wrong argument count"},
		{"storage postgres x {\npool 3\n}", StorageConfig{}, `unknown postgres storage option "pool"`},
		{"storage mysql x", StorageConfig{}, `unknown storage kind "mysql"`},
		{"storage", StorageConfig{}, "wrong argument count"},
		{"storage bolt /a /b", StorageConfig{}, "wrong argument count"},
	} {
		var g GuestAuth
		err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("guest_auth {\n" + c.line + "\n}"))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("%q: err = %v, want %q", c.line, err, c.err)
			}
			continue
		}
		if err != nil || g.Storage != c.want {
			t.Fatalf("%q: %+v, %v; want %+v", c.line, g.Storage, err, c.want)
		}
	}
}

// The admin API's storage parameter names a store by its pool key: a bbolt
// file's path (resolved), or another kind's "<kind>:<location>" as it is.
func TestAdminStoreByPoolKey(t *testing.T) {
	cfg := storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "k.db")}
	const key = "otherkind:db.example/auth"
	sh, err := openShared(context.Background(), key, cfg)
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

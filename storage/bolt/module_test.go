package bolt_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// The module guest_auth.storage.bolt: registered under its kind, it reads
// `bolt <path>`, resolves the path (placeholders, relative to the working
// directory, Caddy's data directory by default) and opens that file.
func TestModule(t *testing.T) {
	info, err := caddy.GetModule("guest_auth.storage.bolt")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := info.New().(*bolt.Module); !ok {
		t.Fatalf("guest_auth.storage.bolt makes a %T", info.New())
	}

	var m bolt.Module
	if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser("bolt rel/{env.GA_TEST_DIR}/g.db")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GA_TEST_DIR", "sub")
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	if want, _ := filepath.Abs("rel/sub/g.db"); m.Path != "rel/{env.GA_TEST_DIR}/g.db" || m.StoreKey() != want {
		t.Fatalf("path %q, key %q; want the key %s", m.Path, m.StoreKey(), want)
	}
	for _, bad := range []string{"bolt", "bolt /a /b"} {
		var m bolt.Module
		if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil || !strings.Contains(err.Error(), "wrong argument count") {
			t.Fatalf("%q: %v", bad, err)
		}
	}

	var def bolt.Module
	if err := def.Provision(caddy.Context{}); err != nil || def.StoreKey() != filepath.Join(caddy.AppDataDir(), "guest_auth", "guestauth.db") {
		t.Fatalf("default: %q, %v", def.StoreKey(), err)
	}

	m = bolt.Module{Path: filepath.Join(t.TempDir(), "g.db")}
	if err := m.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	st, err := m.OpenStore(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if d := st.Describe(); d != m.StoreKey() {
		t.Fatalf("opened %q, want the file %s", d, m.StoreKey())
	}
}

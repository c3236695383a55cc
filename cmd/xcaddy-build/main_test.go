package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The real manifest parses, builds this module's caddymodule package from
// the repository root and names go.mod's Caddy version (loadManifest fails
// otherwise). The build itself needs the network; .ci/run does it.
func TestRepositoryManifest(t *testing.T) {
	b, err := loadManifest("../../xcaddy.json")
	if err != nil {
		t.Fatal(err)
	}
	root, _ := filepath.Abs("../..")
	if len(b.Replacements) != 1 || string(b.Replacements[0].Old) != "github.com/guestauth/caddy-guestauth" || string(b.Replacements[0].New) != root {
		t.Fatalf("replacements: %+v (want this module => %s)", b.Replacements, root)
	}
	if len(b.Plugins) != 1 || b.Plugins[0].PackagePath != "github.com/guestauth/caddy-guestauth/caddymodule" {
		t.Fatalf("plugins: %+v", b.Plugins)
	}
}

func writeManifest(t *testing.T, dir, manifest, gomod string) string {
	t.Helper()
	if gomod != "" {
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "xcaddy.json")
	if err := os.WriteFile(p, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReplacementsResolveAgainstManifestDir(t *testing.T) {
	dir := t.TempDir()
	p := writeManifest(t, dir, `{"caddy_version":"v2.11.9","replacements":[
		{"old":"a","new":"./"},{"old":"b","new":"../fork"},{"old":"c","new":"/abs/c"},
		{"old":"d","new":"example.com/d v1.2.3"}]}`, "module x\n\nrequire (\n\tgithub.com/caddyserver/caddy/v2 v2.11.9 // indirect\n)\n")
	t.Chdir(t.TempDir()) // the working directory must not matter
	b, err := loadManifest(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{dir, filepath.Join(filepath.Dir(dir), "fork"), "/abs/c", "example.com/d v1.2.3"}
	for i, r := range b.Replacements {
		if string(r.New) != want[i] {
			t.Errorf("replacement %s: %q, want %q", r.Old, r.New, want[i])
		}
	}
}

func TestManifestChecks(t *testing.T) {
	for name, c := range map[string]struct{ manifest, gomod, err string }{
		"version mismatch": {`{"caddy_version":"v2.10.0"}`, "module x\nrequire github.com/caddyserver/caddy/v2 v2.11.9\n", "differs from go.mod"},
		"unknown key":      {`{"caddy_version":"v2.11.9","plugins":[{"module":"x"}]}`, "", "unknown field"},
		"no version":       {`{"plugins":[]}`, "", "caddy_version is required"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := loadManifest(writeManifest(t, t.TempDir(), c.manifest, c.gomod))
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("error %v, want %q", err, c.err)
			}
		})
	}
}

func TestZeroPseudoVersion(t *testing.T) {
	for mod, want := range map[string]string{
		"github.com/guestauth/caddy-guestauth": "v0.0.0-00010101000000-000000000000",
		"example.com/m/v3":                     "v3.0.0-00010101000000-000000000000",
		"example.com/vendor":                   "v0.0.0-00010101000000-000000000000",
	} {
		if got := zeroPseudoVersion(mod); got != want {
			t.Errorf("%s: %s, want %s", mod, got, want)
		}
	}
}

package caddymodule_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddytest"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/guestauth/caddy-guestauth/caddymodule"
)

var updateGolden = flag.Bool("update", false, "rewrite the JSON half of testdata/caddyfile_adapt/*.caddyfiletest")

// TestCaddyfileAdapt checks each Caddyfile in testdata/caddyfile_adapt
// against the JSON it must adapt to (the file's part after "----------"),
// the way Caddy's own caddyfile_adapt tests do. Run with -update to rewrite
// the JSON after an intended change, then read the diff.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, ok := strings.Cut(string(data), "----------")
			if !ok {
				t.Fatalf("%s: no ---------- separator", path)
			}
			caddyfile = strings.TrimSpace(caddyfile) + "\n"
			if *updateGolden {
				out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
				if err != nil {
					t.Fatal(err)
				}
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, out, "", "\t"); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(caddyfile+"----------\n"+pretty.String()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !caddytest.CompareAdapt(t, path, caddyfile, "caddyfile", strings.TrimSpace(expected)) {
				t.Errorf("%s does not adapt to its JSON (run with -update to see the new form)", path)
			}
		})
	}
}

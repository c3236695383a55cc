package caddymodule_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The docs' JavaScript createGuestUser, copied verbatim from the Hanzo IAM
// and Casdoor guest-authentication pages into testdata, runs unchanged in
// Node against the real server, and its token works on the app.
func TestSeedJavaScriptExample(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("node is required in CI: %v", err)
		}
		t.Skipf("node not installed: %v", err)
	}
	s := startGuestAuth(t, "")
	for _, c := range []struct{ file, path string }{
		{"testdata/hanzo_create_guest.js", "/oauth/token"},
		{"testdata/casdoor_create_guest.js", "/api/login/oauth/access_token"},
	} {
		t.Run(c.file, func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(src), "/your-") || !strings.Contains(string(src), c.path+"'") {
				t.Fatalf("%s is not the docs example for %s", c.file, c.path)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, node, "testdata/run_seed.js", c.file, s.Base, "demo-app", "demo-secret")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("node: %v\n%s", err, stderr.String())
			}
			token := strings.TrimSpace(stdout.String())
			hdr, claims := jwtParts(t, token)
			if hdr["typ"] != "at+jwt" || claims["tag"] != "guest-user" || claims["client_id"] != "demo-app" {
				t.Fatalf("token from the example: header %v claims %v", hdr, claims)
			}
			resp := s.get("/app", token)
			if resp.Status != http.StatusOK {
				t.Fatalf("app with the example's token: %d %s", resp.Status, resp.Body)
			}
			h := seen(t, resp)
			if h.Get("X-Auth-User-Id") != claims["sub"] || h.Get("X-Auth-User-Tag") != "guest-user" || h.Get("X-Auth-User-Anonymous") != "true" {
				t.Fatalf("upstream saw %v", h)
			}
		})
	}
}

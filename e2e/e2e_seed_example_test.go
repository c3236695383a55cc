package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The docs' JavaScript example (createGuestUser and upgradeGuestUser), copied
// verbatim from the Hanzo IAM and Casdoor guest-authentication pages into
// testdata, runs unchanged in Node against the real server: the guest's
// token works on the app, and the upgrade makes it a normal user with the
// same id who can then sign in with the new name and password.
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
		{"testdata/hanzo_example.js", "/oauth/token"},
		{"testdata/casdoor_example.js", "/api/login/oauth/access_token"},
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
			name := "js-user-" + strings.Split(c.file, "_")[0][len("testdata/"):]
			cmd := exec.CommandContext(ctx, node, "testdata/run_seed.js", c.file, s.Base, "demo-app", "demo-secret", name, "js-password-1")
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("node: %v\n%s", err, stderr.String())
			}
			var out struct {
				Token   string         `json:"token"`
				Upgrade map[string]any `json:"upgrade"`
			}
			if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
				t.Fatalf("node printed %q: %v", stdout.String(), err)
			}
			token := out.Token
			hdr, claims := jwtParts(t, token)
			if hdr["typ"] != "at+jwt" || claims["tag"] != "guest-user" || claims["client_id"] != "demo-app" { // as issued, before the upgrade
				t.Fatalf("token from the example: header %v claims %v", hdr, claims)
			}
			resp := s.get("/app", token)
			if resp.Status != http.StatusOK {
				t.Fatalf("app with the example's token: %d %s", resp.Status, resp.Body)
			}
			h := seen(t, resp)
			// The upgrade already happened, and the old token shows it.
			if h.Get("X-Auth-User-Id") != claims["sub"] || h.Get("X-Auth-User-Tag") != "normal-user" || h.Get("X-Auth-User-Anonymous") != "false" || h.Get("X-Auth-User-Name") != name {
				t.Fatalf("upstream saw %v", h)
			}
			if out.Upgrade["status"] != "ok" {
				t.Fatalf("upgradeGuestUser returned %v", out.Upgrade)
			}
			in := decodeTokens(t, s.signIn(name, "js-password-1"))
			if _, c2 := jwtParts(t, in.AccessToken); c2["sub"] != claims["sub"] {
				t.Fatalf("sign-in after the upgrade reached %v, want %v", c2["sub"], claims["sub"])
			}
		})
	}
}

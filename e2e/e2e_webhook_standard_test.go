package e2e

// Real deliveries of a real Caddy, verified by a Standard Webhooks library
// that is not ours: the npm standardwebhooks package (pinned in
// testdata/webhooks, `npm ci --prefix e2e/testdata/webhooks`), run
// by node on each raw delivery as a JavaScript receiver would.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/webhook"
)

// standardWebhooksVersion is the version testdata/webhooks pins.
const standardWebhooksVersion = "1.3.0"

// needStandardWebhooks returns the node binary, once node and the pinned
// standardwebhooks package are found: without them the test fails under
// CI and skips elsewhere.
func needStandardWebhooks(t *testing.T) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if os.Getenv("CI") != "" {
			t.Fatalf("CI: %s (.ci/run installs node and runs npm ci in e2e/testdata/webhooks)", msg)
		}
		t.Skipf("%s; to run this test: npm ci --prefix e2e/testdata/webhooks", msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "webhooks", "node_modules", "standardwebhooks", "package.json"))
	if err != nil {
		missing("the npm standardwebhooks package is not installed: %v", err)
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(raw, &pkg); err != nil || pkg.Version != standardWebhooksVersion {
		missing("standardwebhooks %q installed, want %s (%v)", pkg.Version, standardWebhooksVersion, err)
	}
	return node
}

// jsVerdict is what verify.js says of one delivery.
type jsVerdict struct {
	OK      bool           `json:"ok"`
	Error   string         `json:"error"`
	Payload map[string]any `json:"payload"`
}

// jsVerify hands one raw delivery to standardwebhooks' Webhook.verify:
// with raw, keyed with the secret's UTF-8 bytes (a plain secret), else
// with the secret as given (whsec_…). The headers go as Node's http module
// presents them: lowercase names, repeated values joined.
func jsVerify(t *testing.T, node, secret string, raw bool, header http.Header, body []byte) jsVerdict {
	t.Helper()
	hs := map[string]string{}
	for k, v := range header {
		hs[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	in, err := json.Marshal(map[string]any{"secret": secret, "raw": raw, "headers": hs, "body_b64": base64.StdEncoding.EncodeToString(body)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("testdata", "webhooks", "verify.js"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("node verify.js: %v\n%s", err, stderr.String())
		return jsVerdict{Error: "node failed"}
	}
	var v jsVerdict
	if err := json.Unmarshal(out, &v); err != nil {
		t.Errorf("verify.js printed %q: %v", out, err)
	}
	return v
}

// jsDelivery is one request the receiver got, with what standardwebhooks
// said of it and what the receiver answered.
type jsDelivery struct {
	header  http.Header
	body    []byte
	verdict jsVerdict
	status  int
}

// Every delivery of a real Caddy, the retry of a refused one included,
// verifies with the npm standardwebhooks package: with a whsec_ secret
// given to it as configured, and with a plain secret given as raw bytes
// (as docs/webhooks.md tells JavaScript receivers to). A retry keeps the
// webhook-id and body; and the library refuses a delivery whose body or id
// was changed, or checked with another secret.
func TestWebhookDeliveriesVerifyWithStandardWebhooks(t *testing.T) {
	t.Parallel()
	node := needStandardWebhooks(t)
	random := make([]byte, 32)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, secret string
		raw          bool
	}{
		{"whsec secret", "whsec_" + base64.StdEncoding.EncodeToString(random), false},
		{"plain secret", "plain-sécret-" + hex.EncodeToString(random[:8]), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			var got []jsDelivery
			hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				body, err := io.ReadAll(r.Body)
				if err != nil {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				d := jsDelivery{header: r.Header.Clone(), body: body, verdict: jsVerify(t, node, tc.secret, tc.raw, r.Header, body)}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case !d.verdict.OK:
					d.status = http.StatusUnauthorized
				case len(got) == 0:
					d.status = http.StatusServiceUnavailable // the sender retries
				default:
					d.status = http.StatusNoContent
				}
				got = append(got, d)
				w.WriteHeader(d.status)
			}))
			t.Cleanup(hook.Close)

			s := startGuestAuth(t, fmt.Sprintf("webhook %s/hook %s", hook.URL, tc.secret))
			g := s.createGuest()
			s.createGuest()
			wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"name": "std-webhook-kate", "password": "kate-password"}), http.StatusOK, "ok")

			// guest.created twice and guest.upgraded, the first tried twice.
			var ds []jsDelivery
			deadline := time.Now().Add(30 * time.Second)
			for {
				mu.Lock()
				ds = append([]jsDelivery(nil), got...)
				mu.Unlock()
				for i, d := range ds {
					if !d.verdict.OK {
						t.Fatalf("delivery %d refused by standardwebhooks: %s\nheaders %v\nbody %s", i, d.verdict.Error, d.header, d.body)
					}
				}
				if len(ds) >= 4 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d deliveries after 30s, want 4", len(ds))
				}
				time.Sleep(50 * time.Millisecond)
			}
			// The outbox retries the refused one after its backoff, so the
			// others may come in between: the retry is the delivery that
			// repeats the first one's webhook-id.
			types := map[string]int{}
			ids := map[string]bool{}
			first := ds[0]
			var retry *jsDelivery
			for i, d := range ds {
				id := d.header.Get(webhook.HeaderID)
				if d.verdict.Payload["id"] != id || id == "" {
					t.Fatalf("delivery %d: webhook-id %q, body id %v", i, id, d.verdict.Payload["id"])
				}
				if i == 0 {
					continue
				}
				if d.status == http.StatusNoContent {
					types[fmt.Sprint(d.verdict.Payload["type"])]++
					ids[id] = true
				}
				if retry == nil && id == first.header.Get(webhook.HeaderID) {
					retry = &ds[i]
				}
			}
			if len(ds) != 4 || types[webhook.GuestCreated] != 2 || types[webhook.GuestUpgraded] != 1 || len(ids) != 3 {
				t.Fatalf("%d deliveries, accepted %v with %d ids; want guest.created twice and guest.upgraded once, 3 ids", len(ds), types, len(ids))
			}
			// The retry: the same id and body, signed afresh.
			if first.status != http.StatusServiceUnavailable || retry == nil || !bytes.Equal(retry.body, first.body) {
				t.Fatalf("first delivery %s (%d): want the refused one retried with the same webhook-id and body", first.header.Get(webhook.HeaderID), first.status)
			}
			// Controls: the library is not accepting anything.
			tampered := bytes.Replace(first.body, []byte(`"type":"guest.`), []byte(`"type":"ghost.`), 1)
			if bytes.Equal(tampered, first.body) {
				t.Fatalf("first delivery %s is not a guest event", first.body)
			}
			newID := first.header.Clone()
			newID.Set(webhook.HeaderID, "replayed-under-a-new-id")
			otherSecret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("another secret, 24 bytes+"))
			for _, c := range []struct {
				name   string
				secret string
				header http.Header
				body   []byte
			}{
				{"tampered body", tc.secret, first.header, tampered},
				{"another webhook-id", tc.secret, newID, first.body},
				{"another secret", otherSecret, first.header, first.body},
			} {
				raw := tc.raw && c.secret == tc.secret
				if v := jsVerify(t, node, c.secret, raw, c.header, c.body); v.OK || !strings.Contains(v.Error, "WebhookVerificationError") {
					t.Errorf("%s: standardwebhooks says %+v; want a WebhookVerificationError", c.name, v)
				}
			}
		})
	}
}

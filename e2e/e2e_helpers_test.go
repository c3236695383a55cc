package e2e

// Helpers shared by the integration tests of the core (token endpoint,
// proxying, lifecycle).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// identityNames are the default identity headers, normalized (lower case,
// '-' for '_').
var identityNames = []string{"x-auth-user-id", "x-auth-user-name", "x-auth-user-tag", "x-auth-user-anonymous"}

func normHeader(k string) string { return strings.ToLower(strings.ReplaceAll(k, "_", "-")) }

// identityKeys lists the header keys of h that spell one of names in any way.
func identityKeys(h http.Header, names ...string) []string {
	var out []string
	for k := range h {
		for _, n := range names {
			if normHeader(k) == n {
				out = append(out, k)
			}
		}
	}
	return out
}

// seen decodes the headers the upstream echoed back for a proxied request.
// Unlike Upstream.Headers, it is safe when requests run in parallel.
func seen(t testing.TB, r *response) http.Header {
	t.Helper()
	var h http.Header
	if err := json.Unmarshal(r.Body, &h); err != nil {
		t.Fatalf("not an upstream echo (%d): %v: %s", r.Status, err, r.Body)
	}
	return h
}

// doRaw sends headers with their keys exactly as given (no canonicalizing),
// so the spelling on the wire is the test's.
func (s *server) doRaw(method, path string, body io.Reader, headers ...string) *response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.Base+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[headers[i]] = append(req.Header[headers[i]], headers[i+1])
	}
	return s.exchange(req)
}

// jwtParts decodes a compact JWT's header and payload without verifying it.
func jwtParts(t testing.TB, tok string) (hdr, claims map[string]any) {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	for i, dst := range []*map[string]any{&hdr, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(p[i])
		if err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.UseNumber()
		if err := dec.Decode(dst); err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
	}
	return hdr, claims
}

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

// discover fetches the discovery document and the JWKS it names.
func (s *server) discover() (doc map[string]any, set jwk.Set, rawJWKS []byte) {
	s.t.Helper()
	resp := s.get("/.well-known/openid-configuration", "")
	if resp.Status != http.StatusOK {
		s.t.Fatalf("discovery: %d %s", resp.Status, resp.Body)
	}
	doc = resp.JSON(s.t)
	uri, _ := doc["jwks_uri"].(string)
	if !strings.HasPrefix(uri, s.Base+"/") {
		s.t.Fatalf("jwks_uri %q is not under %s", uri, s.Base)
	}
	jr, err := http.Get(uri)
	if err != nil {
		s.t.Fatal(err)
	}
	defer jr.Body.Close()
	rawJWKS, err = io.ReadAll(jr.Body)
	if err != nil || jr.StatusCode != http.StatusOK {
		s.t.Fatalf("JWKS: %d %v %s", jr.StatusCode, err, rawJWKS)
	}
	set, err = jwk.Parse(rawJWKS)
	if err != nil {
		s.t.Fatalf("JWKS does not parse: %v: %s", err, rawJWKS)
	}
	return doc, set, rawJWKS
}

// openStopped opens the bbolt file of a stopped server (bbolt locks the
// file while Caddy runs); the caller closes it before starting it again.
func openStopped(t testing.TB, path string) storage.Backend {
	t.Helper()
	st, err := bolt.Open(path, bolt.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("opening %s: %v", path, err)
	}
	return st
}

// storedUsers reads every user in a stopped server's store.
func storedUsers(t testing.TB, path string) []model.User {
	t.Helper()
	st := openStopped(t, path)
	defer st.Close()
	var users []model.User
	for after := ""; ; {
		page, next, err := st.ListUsers(context.Background(), after, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, page...)
		if next == "" {
			return users
		}
		after = next
	}
}

// guestRequest is the seeds' request body for a client.
func guestRequest(clientID, secret string) map[string]string {
	return map[string]string{"grant_type": "authorization_code", "client_id": clientID, "client_secret": secret, "code": "guest-user"}
}

// guestStorm is clients creating guests in a loop on one Caddy, recording
// every answer's status and every guest whose tokens were returned.
type guestStorm struct {
	mu       sync.Mutex
	acked    []tokenSet
	statuses map[int]int
	stop     chan struct{}
	wg       sync.WaitGroup
}

// startGuestStorm starts clients creating guests at base, each pausing
// between requests. A request that gets no answer ends its client: Caddy
// was killed if mayDie, and the test fails otherwise.
func startGuestStorm(t *testing.T, base string, clients int, pause time.Duration, mayDie bool) *guestStorm {
	g := &guestStorm{statuses: map[int]int{}, stop: make(chan struct{})}
	for range clients {
		g.wg.Go(func() {
			for {
				select {
				case <-g.stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, base+"/oauth/token", jsonBody(guestRequest("demo-app", "demo-secret")))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					if !mayDie {
						t.Error(err)
					}
					return
				}
				var ts tokenSet
				ok := resp.StatusCode == http.StatusOK && decodeJSON(resp, &ts) == nil && ts.AccessToken != ""
				resp.Body.Close()
				g.mu.Lock()
				g.statuses[resp.StatusCode]++
				if ok {
					g.acked = append(g.acked, ts)
				}
				g.mu.Unlock()
				time.Sleep(pause)
			}
		})
	}
	return g
}

// count is how many answers had status so far.
func (g *guestStorm) count(status int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.statuses[status]
}

// end stops the clients and returns the acknowledged guests and the
// statuses seen.
func (g *guestStorm) end() ([]tokenSet, map[int]int) {
	close(g.stop)
	g.wg.Wait()
	return g.acked, g.statuses
}

// kill stops s with SIGKILL: no shutdown, no flush.
func (s *server) kill() {
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

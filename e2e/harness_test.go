// Package e2e holds the process-level tests: they run the real Caddy
// binary (the plugin module's ./cmd/caddy, built once in TestMain, with
// -race when the tests run with it) as a child process over real HTTP,
// each test with its own ports, data directory and bbolt file, so they run
// in parallel. It is a module of its own, so its dependencies (chromedp,
// go-oidc) stay out of the plugin's go.mod, and `go test ./...` at the
// repository root never builds Caddy.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "guestauth-bin")
	if err != nil {
		panic(err)
	}
	caddyBin = filepath.Join(dir, "caddy")
	args := []string{"build", "-o", caddyBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/caddy")...)
	// Built in the plugin's module alone (GOWORK=off), with the versions
	// its go.mod selects, not those this test module's dependencies
	// (chromedp, go-oidc) would raise them to through go.work.
	build.Dir = ".."
	build.Env = append(os.Environ(), "GOWORK=off")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building caddy:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// handedOut remembers every port freePort returned, so two parallel tests
// never share one.
var handedOut sync.Map

// freePort picks a port for a Caddy child process to bind. It is taken
// below the kernel's ephemeral range (/proc/sys/net/ipv4/ip_local_port_range,
// 32768 and up by default): a port the kernel hands out for port 0 (every
// httptest server and every outgoing connection of this process) could be
// taken between this probe and Caddy's bind, and the test would then talk
// to that other server believing it was Caddy.
func freePort(t testing.TB) int {
	t.Helper()
	for range 10000 {
		port := 20000 + rand.IntN(12000)
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // in use by someone else
		}
		l.Close()
		return port
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

// upstream is the app behind guest_auth: it records each request's headers
// and answers them as JSON.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	last http.Header
	hits int
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.hits++
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(u.Close)
	return u
}

// Headers returns the headers of the last request the upstream saw.
func (u *upstream) Headers() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *upstream) Hits() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits
}

// server is one running Caddy process.
type server struct {
	t        testing.TB
	Dir      string // data dir (XDG_DATA_HOME) and working dir
	DB       string // the bbolt file the config names
	Port     int
	Admin    string
	Base     string // http://127.0.0.1:port
	Upstream *upstream
	Env      []string // added to Caddy's environment (a later entry wins)
	cmd      *exec.Cmd
	logs     *syncBuffer
	done     chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// siteConfig renders a Caddyfile: a site on the server's port with
// guest_auth (options = the lines inside its block) in front of the upstream.
func (s *server) siteConfig(options string) string {
	return fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		client demo-app demo-secret
		client other-app other-secret
		%s
		%s
	}
	reverse_proxy %s
}
`, s.Admin, s.Port, s.DB, testLimits(options), options, strings.TrimPrefix(s.Upstream.URL, "http://"))
}

// testLimits are the limit lines of every test site, less those the
// test's options set themselves (a Caddyfile refuses an option given
// twice): every test client is 127.0.0.1, so the per-IP guest limit is
// lifted; the global one is the default from before it was lowered, which
// some tests rely on; no cap on live guests.
func testLimits(options string) string {
	var lines []string
	for _, l := range [][2]string{ // the option, the line
		{"guest_limit ip", "guest_limit ip 100000 1ms"},
		{"guest_limit global", "guest_limit global 500 20ms"},
		{"max_live_guests", "max_live_guests 0"},
	} {
		set := false
		for _, o := range strings.Split(options, "\n") {
			set = set || strings.HasPrefix(strings.TrimSpace(o)+" ", l[0]+" ")
		}
		if !set {
			lines = append(lines, l[1])
		}
	}
	return strings.Join(lines, "\n\t\t")
}

// newServer prepares (but does not start) a server with a fresh data dir.
func newServer(t testing.TB) *server {
	t.Helper()
	dir := t.TempDir()
	s := &server{t: t, Dir: dir, DB: filepath.Join(dir, "guestauth.db"), Port: freePort(t), Upstream: newUpstream(t)}
	s.Admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s.Base = fmt.Sprintf("http://127.0.0.1:%d", s.Port)
	return s
}

// startGuestAuth starts a server with guest_auth configured by options.
func startGuestAuth(t testing.TB, options string) *server {
	s := newServer(t)
	s.Start(s.siteConfig(options))
	return s
}

// Start runs Caddy on the given Caddyfile and waits until it serves.
func (s *server) Start(caddyfile string) {
	s.t.Helper()
	if err := s.tryStart(caddyfile); err != nil {
		s.t.Fatalf("caddy did not start: %v\n%s", err, s.logs.String())
	}
}

func (s *server) tryStart(caddyfile string) error {
	cfg := filepath.Join(s.Dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		return err
	}
	s.logs = &syncBuffer{}
	s.cmd = exec.Command(caddyBin, "run", "--config", cfg, "--adapter", "caddyfile")
	s.cmd.Dir = s.Dir
	s.cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+s.Dir, "XDG_CONFIG_HOME="+s.Dir, "HOME="+s.Dir)
	s.cmd.Env = append(s.cmd.Env, s.Env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()
	s.t.Cleanup(s.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.cmd = nil
			return fmt.Errorf("caddy exited: %v", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port), 100*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("caddy not listening after 20s")
}

// Stop shuts Caddy down gracefully (closing the bbolt file).
func (s *server) Stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Reload loads a new Caddyfile through the admin API, as `caddy reload` does.
func (s *server) Reload(caddyfile string) {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+s.Admin+"/load", strings.NewReader(caddyfile))
	req.Header.Set("Content-Type", "text/caddyfile")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		s.t.Fatalf("reload: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		s.t.Fatalf("reload: %d %s\n%s", resp.StatusCode, b, s.logs.String())
	}
	// The old config's servers close their idle keep-alive connections
	// as they shut down; a request sent on one of them at that moment
	// reads EOF. The next requests open connections to the new servers.
	http.DefaultClient.CloseIdleConnections()
}

// Logs is everything Caddy printed so far.
func (s *server) Logs() string { return s.logs.String() }

// HasLog waits up to 5s for Caddy's output to contain substr: logs arrive
// through a pipe, after the HTTP response that caused them.
func (s *server) HasLog(substr string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.Logs(), substr) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// response is a finished HTTP exchange.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r *response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.Body)
	}
	return m
}

// do sends a request; headers alternate name, value.
func (s *server) do(method, path string, body io.Reader, headers ...string) *response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.Base+path, body)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return s.exchange(req)
}

// exchange sends req and reads the whole answer.
func (s *server) exchange(req *http.Request) *response {
	s.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return &response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func (s *server) postJSON(path string, v any, headers ...string) *response {
	s.t.Helper()
	b, _ := json.Marshal(v)
	return s.do(http.MethodPost, path, bytes.NewReader(b), append([]string{"Content-Type", "application/json"}, headers...)...)
}

func (s *server) postForm(path string, v url.Values, headers ...string) *response {
	s.t.Helper()
	return s.do(http.MethodPost, path, strings.NewReader(v.Encode()), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, headers...)...)
}

// tokenSet is the token endpoint's answer.
type tokenSet struct {
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
}

// createGuest runs the seeds' guest request and fails the test unless it works.
func (s *server) createGuest() tokenSet {
	s.t.Helper()
	resp := s.postJSON("/oauth/token", map[string]string{
		"grant_type": "authorization_code", "client_id": "demo-app", "client_secret": "demo-secret", "code": "guest-user",
	})
	if resp.Status != http.StatusOK {
		s.t.Fatalf("create guest: %d %s", resp.Status, resp.Body)
	}
	var ts tokenSet
	if err := json.Unmarshal(resp.Body, &ts); err != nil {
		s.t.Fatal(err)
	}
	return ts
}

// get calls the protected app with an access token ("" for none).
func (s *server) get(path, token string, headers ...string) *response {
	s.t.Helper()
	if token != "" {
		headers = append(headers, "Authorization", "Bearer "+token)
	}
	return s.do(http.MethodGet, path, nil, headers...)
}

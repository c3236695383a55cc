package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A client that sends its headers and then trickles the body (slowloris)
// is cut off after api_read_timeout: 408 and the connection closed, instead
// of holding a connection and a goroutine for as long as it likes.
func TestAPIReadTimeoutCutsOffSlowBodies(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "api_read_timeout 1s")
	for _, path := range []string{"/oauth/token", "/oauth2/challenge", "/oauth/revoke"} {
		t.Run(strings.TrimPrefix(path, "/"), func(t *testing.T) {
			conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", s.Port))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Generous: only a server that never gives up runs into it.
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"grant_type", path, s.Port)
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				for range 200 { // never the whole body
					select {
					case <-stop:
						return
					case <-t.C:
					}
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}()
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer to a trickled body: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
				t.Fatalf("%d (close %v) %s, want 408 and the connection closed", resp.StatusCode, resp.Close, body)
			}
		})
	}
	// A normal request on the same server is unaffected.
	s.createGuest()
}

// startBehindProxy starts guest_auth with 127.0.0.1 as a trusted proxy, so
// each request chooses its client IP with X-Forwarded-For.
func startBehindProxy(t *testing.T, options string) *server {
	t.Helper()
	s := newServer(t)
	s.Start(strings.Replace(s.siteConfig(options), "persist_config off\n",
		"persist_config off\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\tclient_ip_headers X-Forwarded-For\n\t}\n", 1))
	return s
}

func wantStatus(t *testing.T, what string, r *response, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: %d %s, want %d", what, r.Status, r.Body, status)
	}
}

// Per-IP limits count an IPv6 client's /64, not its exact address: a
// client rotating addresses within its /64 still has one bucket.
func TestPerIPLimitsKeyIPv6ByPrefix(t *testing.T) {
	t.Parallel()
	s := startBehindProxy(t, "guest_limit ip 2 1h")
	wantStatus(t, "first address of a /64", s.tryGuest("2001:db8:1:2::1"), http.StatusOK)
	wantStatus(t, "second address of the /64", s.tryGuest("2001:db8:1:2:ffff:ffff:ffff:fffe"), http.StatusOK)
	wantLimited(t, s.tryGuest("2001:db8:1:2::abcd"))
	wantStatus(t, "the next /64", s.tryGuest("2001:db8:1:3::1"), http.StatusOK)
	// IPv4 keys on the whole address; an IPv4-mapped IPv6 address is the
	// IPv4 address.
	wantStatus(t, "IPv4", s.tryGuest("203.0.113.1"), http.StatusOK)
	wantStatus(t, "IPv4 mapped", s.tryGuest("::ffff:203.0.113.1"), http.StatusOK)
	wantLimited(t, s.tryGuest("203.0.113.1"))
	wantStatus(t, "another IPv4 address", s.tryGuest("203.0.113.2"), http.StatusOK)
}

func TestIPKeyPrefixIsConfigurable(t *testing.T) {
	t.Parallel()
	s := startBehindProxy(t, "guest_limit ip 1 1h\n\t\tip_key_prefix 24 48")
	wantStatus(t, "IPv4", s.tryGuest("198.51.100.1"), http.StatusOK)
	wantLimited(t, s.tryGuest("198.51.100.200")) // same /24
	wantStatus(t, "the next /24", s.tryGuest("198.51.101.1"), http.StatusOK)
	wantStatus(t, "IPv6", s.tryGuest("2001:db8:5:1::1"), http.StatusOK)
	wantLimited(t, s.tryGuest("2001:db8:5:2::1")) // same /48
}

func (s *server) tryChallenge(xff string) *response {
	s.t.Helper()
	return s.postJSON("/oauth2/challenge", map[string]string{"purpose": "anonymous_request"}, "X-Forwarded-For", xff)
}

// Challenges are limited per client network and, whatever the number of
// networks, for the whole site.
func TestChallengeLimits(t *testing.T) {
	t.Parallel()
	s := startBehindProxy(t, "challenge_limit ip 1 1h\n\t\tchallenge_limit global 3 1h")
	wantStatus(t, "IPv6 client", s.tryChallenge("2001:db8:7:7::1"), http.StatusOK)
	wantLimited(t, s.tryChallenge("2001:db8:7:7::2"))
	wantStatus(t, "IPv4 client", s.tryChallenge("192.0.2.1"), http.StatusOK)
	wantStatus(t, "another IPv4 client", s.tryChallenge("192.0.2.2"), http.StatusOK)
	r := s.tryChallenge("192.0.2.3") // a fresh client, but the site's ceiling is reached
	wantLimited(t, r)
	if !strings.Contains(string(r.Body), "RateLimited") {
		t.Fatalf("429 body: %s", r.Body)
	}
}

// twoSites renders a config with guest_auth on s.Port and on port2, both on
// s.DB, each with its own options.
func (s *server) twoSites(port2 int, optsA, optsB string) string {
	up := strings.TrimPrefix(s.Upstream.URL, "http://")
	return fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		%s
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		%s
	}
	reverse_proxy %s
}
`, s.Admin, s.Port, s.DB, optsA, up, port2, s.DB, optsB, up)
}

func (s *server) guestFor(port int, clientID, secret string) tokenSet {
	s.t.Helper()
	body := strings.NewReader(fmt.Sprintf(`{"grant_type":"authorization_code","code":"guest-user","client_id":%q,"client_secret":%q}`, clientID, secret))
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/oauth/token", port), "application/json", body)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var ts tokenSet
	if err := json.NewDecoder(resp.Body).Decode(&ts); err != nil || resp.StatusCode != http.StatusOK {
		s.t.Fatalf("guest at port %d: %d %v", port, resp.StatusCode, err)
	}
	return ts
}

// getAt calls the app on port with token, sending host as the Host header.
func (s *server) getAt(port int, host, token string) *response {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/app", port), nil)
	req.Host = host
	req.Header.Set("Authorization", "Bearer "+token)
	return s.exchange(req)
}

// Two sites sharing a storage file share signing keys. With the issuer
// taken from each request's Host, a token of site A was accepted at site B
// by sending A's Host; such a config is now refused at start (in-process:
// TestSharedStoreNeedsIssuers).
func TestSitesSharingAStoreNeedIssuers(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	portB := freePort(t)
	clients := "client demo-app demo-secret"
	// With an issuer each, a token is accepted at its own site only,
	// whatever Host is sent.
	hostA, hostB := fmt.Sprintf("127.0.0.1:%d", s.Port), fmt.Sprintf("127.0.0.1:%d", portB)
	s.Start(s.twoSites(portB, clients+"\n\t\tissuer http://"+hostA, clients+"\n\t\tissuer http://"+hostB))
	ts := s.guestFor(s.Port, "demo-app", "demo-secret")
	wantStatus(t, "at its own site", s.getAt(s.Port, hostA, ts.AccessToken), http.StatusOK)
	before := s.Upstream.Hits()
	for _, host := range []string{hostB, hostA} {
		wantRefused(t, s, s.getAt(portB, host, ts.AccessToken), before)
	}
}

// Sites naming the same issuer on one store are one authority, but each
// accepts only tokens of the clients it configures (aud).
func TestSharedIssuerSitesCheckAudience(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	portB := freePort(t)
	s.Start(s.twoSites(portB,
		"issuer http://auth.example.com\n\t\tclient app-a secret-a\n\t\tclient shared-app shared-secret",
		"issuer http://auth.example.com\n\t\tclient app-b secret-b\n\t\tclient shared-app shared-secret"))
	a := s.guestFor(s.Port, "app-a", "secret-a")
	wantStatus(t, "app-a at site A", s.getAt(s.Port, "127.0.0.1", a.AccessToken), http.StatusOK)
	before := s.Upstream.Hits()
	r := s.getAt(portB, "127.0.0.1", a.AccessToken)
	wantRefused(t, s, r, before)
	if !strings.Contains(string(r.Body), "client this site does not serve") {
		t.Fatalf("refusal: %s", r.Body)
	}
	shared := s.guestFor(s.Port, "shared-app", "shared-secret")
	wantStatus(t, "a client both sites serve, at site B", s.getAt(portB, "127.0.0.1", shared.AccessToken), http.StatusOK)
}

// The discovery document names the request's origin when no issuer is
// configured: it must not be stored by shared caches then.
func TestDiscoveryCacheability(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	r := s.get("/.well-known/openid-configuration", "")
	if cc := r.Header.Get("Cache-Control"); r.Status != http.StatusOK || !strings.Contains(cc, "no-store") || strings.Contains(cc, "public") {
		t.Fatalf("discovery without issuer: %d Cache-Control %q", r.Status, cc)
	}
	c := startGuestAuth(t, "issuer https://auth.example.com")
	r = c.get("/.well-known/openid-configuration", "")
	if cc := r.Header.Get("Cache-Control"); r.Status != http.StatusOK || cc != "public, max-age=300" {
		t.Fatalf("discovery with an issuer: %d Cache-Control %q", r.Status, cc)
	}
}

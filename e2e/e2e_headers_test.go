package e2e

// The proxied request's header layer over a real Caddy: hop-by-hop
// Connection tokens and request trailers cannot remove or forge identity
// headers.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestConnectionTokensCannotRemoveIdentity: through the real proxy, whose
// hop-by-hop removal would drop a header the Connection header names. (The
// module's side, in each require mode, is the in-process
// TestServeConnectionTokens.)
func TestConnectionTokensCannotRemoveIdentity(t *testing.T) {
	t.Parallel()
	s := startWithGlobal(t, keepUnderscores, "require any")
	ts := s.createGuest()
	_, c := jwtParts(t, ts.AccessToken)
	for _, conn := range []string{
		"X-Auth-User-Tag, X-Auth-User-Anonymous",
		"X-Auth-User-Id",
		"x_auth_user_id, X.Auth.User.Name, keep-alive",
		"X-AUTH-USER-TAG",
	} {
		resp := s.get("/app", ts.AccessToken, "Connection", conn)
		if resp.Status != http.StatusOK {
			t.Fatalf("Connection %q: %d %s", conn, resp.Status, resp.Body)
		}
		h := seen(t, resp)
		want := map[string]string{
			"X-Auth-User-Id": c["sub"].(string), "X-Auth-User-Name": c["name"].(string),
			"X-Auth-User-Tag": "guest-user", "X-Auth-User-Anonymous": "true",
		}
		for k, v := range want {
			if got := h.Values(k); len(got) != 1 || got[0] != v {
				t.Fatalf("Connection %q: upstream %s = %q, want [%q] (all: %v)", conn, k, got, v, h)
			}
		}
	}
}

// TestConnectionCloseStillHonoured: dropping identity tokens keeps the
// others; a client asking to close gets its connection closed.
func TestConnectionCloseStillHonoured(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ts := s.createGuest()
	for _, conn := range []string{"close", "X-Auth-User-Id, close", "close,x_auth_user_tag"} {
		req, _ := http.NewRequest(http.MethodGet, s.Base+"/app", nil)
		req.Header.Set("Authorization", "Bearer "+ts.AccessToken)
		req.Header.Set("Connection", conn)
		resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !resp.Close {
			t.Fatalf("Connection %q: status %d, close %v, want 200 and the connection closed", conn, resp.StatusCode, resp.Close)
		}
		var h http.Header
		json.Unmarshal(body, &h)
		if h.Get("X-Auth-User-Tag") != "guest-user" {
			t.Fatalf("Connection %q: upstream headers %v", conn, h)
		}
	}
}

// trailerUpstream echoes the headers and the trailers it received.
func trailerUpstream(t *testing.T) *httptest.Server {
	u := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"header": r.Header, "trailer": r.Trailer, "body": string(body)})
	}))
	t.Cleanup(u.Close)
	return u
}

type trailerEcho struct {
	Header  http.Header `json:"header"`
	Trailer http.Header `json:"trailer"`
	Body    string      `json:"body"`
}

// startTrailerSite runs guest_auth in front of a trailer-echoing upstream;
// global goes in the global options.
func startTrailerSite(t *testing.T, global string) *server {
	// The upstream first: a listener opened after newServer could take a
	// port freePort has handed out but Caddy has not bound yet.
	up := trailerUpstream(t)
	s := newServer(t)
	s.Start(fmt.Sprintf(`{
	admin %s
	persist_config off
	servers {
		protocols h1 h2c
		%s
	}
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		client demo-app demo-secret
	}
	reverse_proxy %s
}
`, s.Admin, global, s.Port, s.DB, strings.TrimPrefix(up.URL, "http://")))
	return s
}

// checkTrailerEcho: the body and the control trailer arrived, and no
// identity name reached the upstream as a header or a trailer except the
// injected headers, with the wanted id.
func checkTrailerEcho(t *testing.T, e trailerEcho, wantID string) {
	t.Helper()
	if e.Body != "hello" || e.Trailer.Get("X-Checksum") != "abc" {
		t.Fatalf("the body or the control trailer did not arrive, so the check proves nothing: %+v", e)
	}
	names := append(identityNames, "x-auth-merged-from")
	if keys := identityKeys(e.Trailer, names...); len(keys) != 0 {
		t.Fatalf("identity trailers reached the upstream: %v", e.Trailer)
	}
	for _, v := range e.Header.Values("Trailer") {
		if keys := identityKeys(http.Header{strings.TrimSpace(v): nil}, names...); len(keys) != 0 {
			t.Fatalf("identity trailer announced upstream: %v", e.Header)
		}
	}
	noSpoofValues(t, e.Header)
	noSpoofValues(t, e.Trailer)
	if got := e.Header.Values("X-Auth-User-Id"); wantID == "" && len(got) != 0 || wantID != "" && (len(got) != 1 || got[0] != wantID) {
		t.Fatalf("upstream X-Auth-User-Id = %q, want %q", got, wantID)
	}
}

func TestTrailersCannotForgeIdentity(t *testing.T) {
	t.Parallel()
	s := startTrailerSite(t, "")
	ts := s.createGuest()
	_, c := jwtParts(t, ts.AccessToken)
	spoofTrailers := "X-Auth-User-Id: spoof-id\r\nx_auth_user_tag: spoof-tag\r\nX-Auth-Merged-From: spoof-merged\r\n"

	t.Run("http1 chunked", func(t *testing.T) {
		for _, token := range []string{"", ts.AccessToken} {
			for _, declared := range []string{"X-Checksum", "X-Checksum, X-Auth-User-Id, X_Auth_User_Tag, X-Auth-Merged-From"} {
				req := "POST /app HTTP/1.1\r\nHost: " + strings.TrimPrefix(s.Base, "http://") + "\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nTrailer: " + declared + "\r\n"
				if token != "" {
					req += "Authorization: Bearer " + token + "\r\n"
				}
				req += "\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\n" + spoofTrailers + "\r\n"
				var e trailerEcho
				rawHTTP1(t, s.Base, req, &e)
				want := ""
				if token != "" {
					want = c["sub"].(string)
				}
				checkTrailerEcho(t, e, want)
			}
		}
	})

	t.Run("h2c", func(t *testing.T) {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		client := &http.Client{Transport: &http.Transport{Protocols: &p}}
		defer client.CloseIdleConnections()
		for _, token := range []string{"", ts.AccessToken} {
			// An io.Reader of unknown length: the body streams in DATA
			// frames and the trailers follow it.
			req, _ := http.NewRequest(http.MethodPost, s.Base+"/app", io.MultiReader(strings.NewReader("hello")))
			req.Trailer = http.Header{
				"X-Checksum": {"abc"}, "X-Auth-User-Id": {"spoof-id"},
				"X_auth_user_tag": {"spoof-tag"}, "X-Auth-Merged-From": {"spoof-merged"},
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var e trailerEcho
			err = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("answered over %s, not h2c", resp.Proto)
			}
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %v", resp.StatusCode, err)
			}
			want := ""
			if token != "" {
				want = c["sub"].(string)
			}
			checkTrailerEcho(t, e, want)
		}
	})
}

// rawHTTP1 writes a raw request to base and decodes the JSON answer into v.
func rawHTTP1(t *testing.T, base, req string, v any) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
}

package caddymodule_test

import (
	"bufio"
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

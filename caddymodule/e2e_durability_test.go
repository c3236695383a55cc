package caddymodule_test

import (
	"net/http"
	"sync"
	"testing"
)

// kill -9 of Caddy during a guest storm on bbolt: every guest whose tokens
// were returned is on disk, so after a restart on the same file each of
// them still works. A guest is answered only after the commit holding it
// is fsync'd, however many guests share that commit.
func TestBoltKilledDuringGuestStorm(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	cfg := s.siteConfig("")
	s.Start(cfg)
	var mu sync.Mutex
	var got []tokenSet
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, s.Base+"/oauth/token", jsonBody(guestRequest("demo-app", "demo-secret")))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // Caddy is gone
				}
				var ts tokenSet
				ok := resp.StatusCode == http.StatusOK && decodeJSON(resp, &ts) == nil && ts.AccessToken != ""
				resp.Body.Close()
				if ok {
					mu.Lock()
					got = append(got, ts)
					mu.Unlock()
				}
			}
		})
	}
	eventually(t, "guests created", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 200 })
	s.cmd.Process.Kill() // SIGKILL: no shutdown, no flush
	<-s.done
	s.cmd = nil
	close(stop)
	wg.Wait()
	s.Start(cfg)
	defer s.Stop()
	mu.Lock()
	defer mu.Unlock()
	for _, ts := range got {
		if r := s.get("/app", ts.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("a guest acknowledged before kill -9 is refused after the restart: %d %s", r.Status, r.Body)
		}
	}
	s.createGuest()
	t.Logf("%d guests acknowledged before kill -9, all served after the restart", len(got))
}

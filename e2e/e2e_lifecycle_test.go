package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

func TestParallelGuestCreation(t *testing.T) {
	t.Parallel()
	// All requests come from one IP: lift the per-IP guest limit.
	s := startGuestAuth(t, "guest_limit ip 1000 1m")
	const n = 200
	body, _ := json.Marshal(guestRequest("demo-app", "demo-secret"))
	client := &http.Client{Timeout: 60 * time.Second}

	var wg sync.WaitGroup
	ids := make([]string, n)
	tokens := make([]string, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(s.Base+"/oauth/token", "application/json", bytes.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			var ts tokenSet
			if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &ts) != nil || ts.AccessToken == "" {
				errs <- fmt.Errorf("request %d: %d %s", i, resp.StatusCode, raw)
				return
			}
			_, c := jwtParts(t, ts.AccessToken)
			ids[i], _ = c["sub"].(string)
			tokens[i] = ts.AccessToken
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	distinct := map[string]bool{}
	for _, id := range ids {
		distinct[id] = true
	}
	if len(distinct) != n || distinct[""] {
		t.Fatalf("%d distinct user ids from %d creations", len(distinct), n)
	}
	// Every token works and names its own user.
	for i := 0; i < n; i += 25 {
		resp := s.get("/app", tokens[i])
		if resp.Status != http.StatusOK || seen(t, resp).Get("X-Auth-User-Id") != ids[i] {
			t.Fatalf("token %d: %d %s", i, resp.Status, resp.Body)
		}
	}

	s.Stop()
	users := storedUsers(t, s.DB)
	if len(users) != n {
		t.Fatalf("store holds %d users, want %d", len(users), n)
	}
	names := map[string]bool{}
	for _, u := range users {
		if !distinct[u.ID] {
			t.Fatalf("stored user %s was not returned by any request", u.ID)
		}
		if u.Name != "guest_"+u.ID || u.Tag != model.TagGuest {
			t.Fatalf("stored user %+v", u)
		}
		names[model.NameKey(u.Name)] = true
	}
	if len(names) != n {
		t.Fatalf("%d distinct names among %d users", len(names), n)
	}
	// The name index agrees with the users.
	st, err := bolt.Open(s.DB, bolt.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, u := range users {
		if got, err := st.GetUserByName(context.Background(), u.Name); err != nil || got.ID != u.ID {
			t.Fatalf("GetUserByName(%s) = %v, %v", u.Name, got, err)
		}
	}
}

func TestReloadKeepsStoreAndTokens(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	before := s.createGuest()
	_, c1 := jwtParts(t, before.AccessToken)
	if resp := s.get("/app", ""); resp.Status != http.StatusOK {
		t.Fatalf("tokenless before reload: %d", resp.Status)
	}

	start := time.Now()
	s.Reload(s.siteConfig("require any"))
	// Reopening the file would wait for our own lock (3s) and fail.
	if took := time.Since(start); took > 2500*time.Millisecond {
		t.Fatalf("reload took %v", took)
	}

	if resp := s.get("/app", ""); resp.Status != http.StatusUnauthorized {
		t.Fatalf("tokenless after reload to require any: %d, want 401", resp.Status)
	}
	resp := s.get("/app", before.AccessToken)
	if resp.Status != http.StatusOK || seen(t, resp).Get("X-Auth-User-Id") != c1["sub"] {
		t.Fatalf("token from before the reload: %d %s", resp.Status, resp.Body)
	}
	after := s.createGuest()
	_, c2 := jwtParts(t, after.AccessToken)
	resp = s.get("/app", after.AccessToken)
	if resp.Status != http.StatusOK || seen(t, resp).Get("X-Auth-User-Id") != c2["sub"] || c2["sub"] == c1["sub"] {
		t.Fatalf("new guest after reload: %d %s", resp.Status, resp.Body)
	}
	// Reloading again, back and forth, keeps working.
	s.Reload(s.siteConfig(""))
	if resp := s.get("/app", before.AccessToken); resp.Status != http.StatusOK {
		t.Fatalf("after second reload: %d %s", resp.Status, resp.Body)
	}

	s.Stop()
	if strings.Contains(s.Logs(), "locked") {
		t.Fatalf("reload hit the file lock:\n%s", s.Logs())
	}
	if users := storedUsers(t, s.DB); len(users) != 2 {
		t.Fatalf("store holds %d users, want 2", len(users))
	}
}

func TestRestartKeepsKeysAndUsers(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ts := s.createGuest()
	_, c := jwtParts(t, ts.AccessToken)
	_, _, jwks1 := s.discover()

	s.Stop()
	s.Start(s.siteConfig(""))

	_, _, jwks2 := s.discover()
	if !bytes.Equal(jwks1, jwks2) {
		t.Fatalf("JWKS changed across restart:\n%s\n%s", jwks1, jwks2)
	}
	resp := s.get("/app", ts.AccessToken)
	if resp.Status != http.StatusOK {
		t.Fatalf("token from before the restart: %d %s", resp.Status, resp.Body)
	}
	h := seen(t, resp)
	if h.Get("X-Auth-User-Id") != c["sub"] || h.Get("X-Auth-User-Name") != c["name"] {
		t.Fatalf("identity after restart: %v", h)
	}
	ts2 := s.createGuest()
	_, c2 := jwtParts(t, ts2.AccessToken)
	if c2["sub"] == c["sub"] {
		t.Fatal("a new guest got an existing id")
	}
	s.Stop()
	var ids []string
	for _, u := range storedUsers(t, s.DB) {
		ids = append(ids, u.ID)
	}
	slices.Sort(ids)
	want := []string{c["sub"].(string), c2["sub"].(string)}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("stored users %v, want %v", ids, want)
	}
}

func TestSecondProcessOnSameFileFailsClearly(t *testing.T) {
	t.Parallel()
	first := startGuestAuth(t, "")
	ts := first.createGuest()

	second := newServer(t)
	second.DB = first.DB
	start := time.Now()
	err := second.tryStart(second.siteConfig(""))
	took := time.Since(start)
	if err == nil {
		t.Fatalf("a second caddy started on a locked bbolt file:\n%s", second.Logs())
	}
	if !strings.Contains(err.Error(), "exited") {
		t.Fatalf("second caddy did not exit: %v\n%s", err, second.Logs())
	}
	if took > 10*time.Second {
		t.Fatalf("second caddy took %v to give up", took)
	}
	if !strings.Contains(second.Logs(), "locked") || !strings.Contains(second.Logs(), first.DB) {
		t.Fatalf("second caddy's output does not say the file is locked:\n%s", second.Logs())
	}

	// The first one is unaffected.
	if resp := first.get("/app", ts.AccessToken); resp.Status != http.StatusOK {
		t.Fatalf("first caddy after the second failed: %d %s", resp.Status, resp.Body)
	}
	first.createGuest()
}

// TestReloadKeepsSignInLockout: a `caddy reload` of the same config does not
// give a locked account its budget back; a reload that changes the limit
// starts it afresh.
func TestReloadKeepsSignInLockout(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "signin_limit account 3 1h")
	u := s.createGuest()
	wantEnvelope(t, s.updateUser(u.AccessToken, map[string]string{"name": "rhea", "password": "rhea-password"}), http.StatusOK, "ok")
	for i := range 3 {
		if r := s.signInWith("rhea", fmt.Sprintf("guess-%d-password", i), ""); r.Status != http.StatusBadRequest {
			t.Fatalf("guess %d: %d %s", i, r.Status, r.Body)
		}
	}
	locked := func(when string) {
		t.Helper()
		if r := s.signInWith("rhea", "rhea-password", ""); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: right password with the budget spent: %d %s", when, r.Status, r.Body)
		}
	}
	locked("before the reload")
	// Caddy's old server may still answer a request or two while it shuts
	// down: each reload toggles `require any`, and the checks wait until a
	// tokenless request shows the new config answering.
	reload := func(options string, tokenless int) {
		t.Helper()
		s.Reload(s.siteConfig(options))
		for range 100 {
			http.DefaultClient.CloseIdleConnections()
			// The old server may also reset the connection while it stops.
			if resp, err := http.Get(s.Base + "/app"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == tokenless {
					http.DefaultClient.CloseIdleConnections()
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("the reload to %q did not take effect", options)
	}
	reload("signin_limit account 3 1h\n\t\trequire any", http.StatusUnauthorized)
	locked("after the reload")
	reload("signin_limit account 4 1h", http.StatusOK)
	if r := s.signInWith("rhea", "rhea-password", ""); r.Status != http.StatusOK {
		t.Fatalf("after a reload changing the limit: %d %s", r.Status, r.Body)
	}
}

package e2e

// Integration test of the password budgets over the token endpoint.

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
)

func (s *server) signInWith(username, password, deviceToken string) *response {
	s.t.Helper()
	v := url.Values{"grant_type": {"password"}, "username": {username}, "password": {password}}
	if deviceToken != "" {
		v.Set("device_token", deviceToken)
	}
	return s.postForm("/oauth/token", v, "Authorization", basicAuth("demo-app", "demo-secret"))
}

// TestConcurrentSignInGuessesThrottled: 60 wrong passwords at once, with
// the default limits. Only the account's burst (5) is checked; the rest are
// 429 with Retry-After, and so is the right password afterwards, except
// from the owner's client carrying its device token.
func TestConcurrentSignInGuessesThrottled(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	u := s.createGuest()
	wantEnvelope(t, s.updateUser(u.AccessToken, map[string]string{"name": "gwen", "password": "gwen-password"}), http.StatusOK, "ok")
	owner := s.signInWith("gwen", "gwen-password", "")
	if owner.Status != http.StatusOK {
		t.Fatalf("sign-in: %d %s", owner.Status, owner.Body)
	}
	device, _ := owner.JSON(t)["device_token"].(string)
	if device == "" {
		t.Fatalf("no device_token in %s", owner.Body)
	}

	const n = 60
	resps := make([]*response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps[i] = s.signInWith("gwen", fmt.Sprintf("guess-%02d-pw", i), "")
		}()
	}
	wg.Wait()
	checked := 0
	for _, r := range resps {
		switch r.Status {
		case http.StatusBadRequest:
			if r.JSON(t)["error"] != "invalid_grant" {
				t.Fatalf("failure: %s", r.Body)
			}
			checked++
		case http.StatusTooManyRequests:
			if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
				t.Fatalf("429 with Retry-After %q", r.Header.Get("Retry-After"))
			}
			if r.JSON(t)["error"] != "temporarily_unavailable" {
				t.Fatalf("429 body: %s", r.Body)
			}
		default:
			t.Fatalf("guess answered %d: %s", r.Status, r.Body)
		}
	}
	if checked < 1 || checked > 5 {
		t.Fatalf("%d of %d concurrent guesses were checked; the account's burst is 5", checked, n)
	}
	if r := s.signInWith("gwen", "gwen-password", ""); r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
		t.Fatalf("right password with the budget spent: %d %s", r.Status, r.Body)
	}
	if r := s.signInWith("gwen", "gwen-password", device); r.Status != http.StatusOK {
		t.Fatalf("the owner's device was locked out: %d %s", r.Status, r.Body)
	}
}

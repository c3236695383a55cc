package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/webhook"
)

// deletionHook records the verified user.deleted deliveries it gets, by
// user id.
type deletionHook struct {
	*httptest.Server
	mu      sync.Mutex
	deleted map[string]events.Event
	bad     []string
}

func newDeletionHook(t *testing.T, secret string) *deletionHook {
	h := &deletionHook{deleted: map[string]events.Event{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev events.Event
		h.mu.Lock()
		defer h.mu.Unlock()
		if webhook.Verify(secret, r.Header, body, time.Now()) != nil || json.Unmarshal(body, &ev) != nil {
			h.bad = append(h.bad, string(body))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if ev.Type == events.UserDeleted {
			h.deleted[ev.UserID] = ev
		}
	}))
	t.Cleanup(h.Close)
	return h
}

// wait returns the user.deleted event of userID once delivered.
func (h *deletionHook) wait(t *testing.T, userID string) events.Event {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		h.mu.Lock()
		ev, ok := h.deleted[userID]
		bad := h.bad
		h.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("bad deliveries: %q", bad)
		}
		if ok {
			return ev
		}
	}
	t.Fatalf("user.deleted of %s never delivered", userID)
	return events.Event{}
}

// deleteAccount calls POST /api/delete-account with token and, unless "",
// a JSON body.
func (s *server) deleteAccount(token, jsonBody string) *response {
	s.t.Helper()
	hdrs := []string{"Authorization", "Bearer " + token}
	if jsonBody == "" {
		return s.do(http.MethodPost, "/api/delete-account", nil, hdrs...)
	}
	return s.do(http.MethodPost, "/api/delete-account", strings.NewReader(jsonBody), append(hdrs, "Content-Type", "application/json")...)
}

func subOf(t *testing.T, token string) string {
	t.Helper()
	_, claims := jwtParts(t, token)
	return claims["sub"].(string)
}

// POST /api/delete-account over real HTTP: a guest with its token, a member
// with its password; every token of the user stops at once (the proxy, the
// account API, refresh), user.deleted reaches the webhook, and the answers
// are Casdoor's envelope with agreeing statuses (403 for a wrong password,
// 429 with Retry-After past the session's budget, 405 for GET).
func TestDeleteAccountAPI(t *testing.T) {
	t.Parallel()
	hook := newDeletionHook(t, "hook-secret")
	s := startGuestAuth(t, fmt.Sprintf("webhook %s/hook hook-secret\nsignin_limit device 2 1h", hook.URL))

	guest := s.createGuest()
	if r := s.get("/app", guest.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("before: %d", r.Status)
	}
	r := s.deleteAccount(guest.AccessToken, "")
	if body := r.JSON(t); r.Status != http.StatusOK || body["status"] != "ok" || body["data"] != "Affected" {
		t.Fatalf("guest deletion: %d %s", r.Status, r.Body)
	}
	if r := s.get("/app", guest.AccessToken); r.Status != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("the deleted guest's token on the app: %d %v", r.Status, r.Header)
	}
	if r := s.get("/api/get-account", guest.AccessToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("the deleted guest's get-account: %d", r.Status)
	}
	if r := s.refresh(guest.RefreshToken); r.Status != http.StatusBadRequest || r.JSON(t)["error"] != "invalid_grant" {
		t.Fatalf("the deleted guest's refresh: %d %s", r.Status, r.Body)
	}
	if ev := hook.wait(t, subOf(t, guest.AccessToken)); ev.Data["cause"] != "self" || ev.Data["tag"] != "guest-user" {
		t.Fatalf("guest's event: %+v", ev)
	}

	member := s.createGuest()
	if r := s.postJSON("/api/update-user", map[string]string{"name": "gwen", "password": "gwen's password"}, "Authorization", "Bearer "+member.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("upgrade: %d %s", r.Status, r.Body)
	}
	if r := s.get("/api/delete-account", member.AccessToken); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "POST" || r.JSON(t)["status"] != "error" {
		t.Fatalf("GET: %d %v %s", r.Status, r.Header, r.Body)
	}
	for _, c := range []struct {
		body   string
		status int
	}{
		{"", http.StatusForbidden},
		{`{"password":"not gwen's"}`, http.StatusForbidden},
		{`{"password":"still not"}`, http.StatusForbidden},
		{`{"password":"gwen's password"}`, http.StatusTooManyRequests}, // the session's 2 tries are spent
	} {
		r := s.deleteAccount(member.AccessToken, c.body)
		body := r.JSON(t)
		if r.Status != c.status || body["status"] != "error" || body["msg"] == "" || (c.status == 429) != (r.Header.Get("Retry-After") != "") {
			t.Fatalf("member %s: %d %v %s", c.body, r.Status, r.Header, r.Body)
		}
	}
	if r := s.get("/app", member.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("refused deletions deleted: %d", r.Status)
	}
	in := decodeTokens(t, s.postForm("/oauth/token", url.Values{"grant_type": {"password"}, "username": {"gwen"}, "password": {"gwen's password"}},
		"Authorization", basicAuth("demo-app", "demo-secret")))
	if r := s.deleteAccount(in.AccessToken, `{"password":"gwen's password"}`); r.Status != http.StatusOK || r.JSON(t)["status"] != "ok" {
		t.Fatalf("member deletion: %d %s", r.Status, r.Body)
	}
	for _, tok := range []string{member.AccessToken, in.AccessToken} {
		if r := s.get("/app", tok); r.Status != http.StatusUnauthorized {
			t.Fatalf("a deleted member's token: %d", r.Status)
		}
	}
	if ev := hook.wait(t, subOf(t, member.AccessToken)); ev.Data["cause"] != "self" || ev.Data["name"] != "gwen" {
		t.Fatalf("member's event: %+v", ev)
	}
}

// Delete my account from the pages over real HTTP: the browser lands on
// the app without a session (the old cookie is no session any more), and
// its next page load is a new guest.
func TestDeleteAccountPage(t *testing.T) {
	t.Parallel()
	hook := newDeletionHook(t, "hook-secret")
	s := startBrowserSite(t, "", fmt.Sprintf("webhook %s/hook hook-secret", hook.URL))
	v := newVisitor(t, s)
	guest, _ := upstreamID(t, v.page("/"))
	old := v.session().Value
	r := v.post("/auth/account", url.Values{"action": {"delete"}, "confirm": {"yes"}})
	if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/" || v.session() != nil {
		t.Fatalf("deletion: %d %q %v", r.Status, r.Header.Get("Location"), v.session())
	}
	hits := s.Upstream.Hits()
	req := mustRequest(t, http.MethodGet, s.Base+"/members/x")
	req.Header.Set("Cookie", "guestauth_session="+old)
	if r := s.exchange(req); r.Status != http.StatusUnauthorized || s.Upstream.Hits() != hits {
		t.Fatalf("the deleted guest's cookie: %d", r.Status)
	}
	if next, _ := upstreamID(t, v.page("/")); next == "" || next == guest {
		t.Fatalf("after deletion: %q (was %q)", next, guest)
	}
	if ev := hook.wait(t, guest); ev.Data["cause"] != "self" {
		t.Fatalf("event %+v", ev)
	}
}

// PostgreSQL down: a deletion is answered 503 with Retry-After in the
// envelope, and nothing is deleted; once it is back, the deletion works.
func TestDeleteAccountStoreDown(t *testing.T) {
	t.Parallel()
	dsn, ctl := ownPostgres(t)
	s := newServer(t)
	s.DB = `postgres "` + dsn + `" {
			statement_timeout 2s
		}`
	s.Start(s.siteConfig("issuer http://cluster.test"))
	g := s.createGuest()
	ctl("pause")
	r := s.deleteAccount(g.AccessToken, "")
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || r.JSON(t)["status"] != "error" {
		t.Fatalf("while PostgreSQL is down: %d %v %s", r.Status, r.Header, r.Body)
	}
	ctl("resume")
	eventually(t, "PostgreSQL back", func() bool { return s.get("/app", g.AccessToken).Status == http.StatusOK })
	if r := s.deleteAccount(g.AccessToken, ""); r.Status != http.StatusOK {
		t.Fatalf("after the outage: %d %s", r.Status, r.Body)
	}
	if r := s.get("/app", g.AccessToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("deleted: %d", r.Status)
	}
}

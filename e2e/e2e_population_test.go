package e2e

// Integration tests of guest population control: creation limits, the live
// guest cap, expiry, events (log and webhook) and metrics.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/webhook"
)

// tryGuest asks for a guest, optionally claiming a client IP.
func (s *server) tryGuest(xff string) *response {
	s.t.Helper()
	var h []string
	if xff != "" {
		h = []string{"X-Forwarded-For", xff}
	}
	return s.postJSON("/oauth/token", guestRequest("demo-app", "demo-secret"), h...)
}

func wantLimited(t *testing.T, r *response) {
	t.Helper()
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429: %s", r.Status, r.Body)
	}
	if secs, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || secs < 1 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if m := r.JSON(t); m["error"] == "" || m["error_description"] == "" {
		t.Fatalf("429 body: %s", r.Body)
	}
}

func TestGuestLimitPerIPIgnoresSpoofedForwardedFor(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "guest_limit ip 2 1h")
	for range 2 {
		if r := s.tryGuest(""); r.Status != http.StatusOK {
			t.Fatalf("within the limit: %d", r.Status)
		}
	}
	wantLimited(t, s.tryGuest(""))
	// 127.0.0.1 is not a trusted proxy here, so X-Forwarded-For is ignored.
	wantLimited(t, s.tryGuest("203.0.113.7"))
	s.Stop()
	if n := len(storedUsers(t, s.DB)); n != 2 {
		t.Fatalf("%d users stored; refused creations must write nothing", n)
	}
}

func TestGuestLimitPerIPHonoursTrustedProxy(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	cfg := strings.Replace(s.siteConfig("guest_limit ip 1 1h"), "persist_config off\n",
		"persist_config off\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\tclient_ip_headers X-Forwarded-For\n\t}\n", 1)
	s.Start(cfg)
	if r := s.tryGuest("203.0.113.1"); r.Status != http.StatusOK {
		t.Fatalf("first client: %d %s", r.Status, r.Body)
	}
	wantLimited(t, s.tryGuest("203.0.113.1"))
	if r := s.tryGuest("203.0.113.2"); r.Status != http.StatusOK {
		t.Fatalf("second client behind the trusted proxy: %d %s", r.Status, r.Body)
	}
}

func TestGuestGlobalCeilingAndLiveCap(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "guest_limit global 3 1h")
	for range 3 {
		s.createGuest()
	}
	wantLimited(t, s.tryGuest(""))

	c := startGuestAuth(t, "max_live_guests 2")
	first := c.createGuest()
	c.createGuest()
	wantLimited(t, c.tryGuest(""))
	// An upgrade frees a place: the cap counts guests only.
	wantEnvelope(t, c.updateUser(first.AccessToken, map[string]string{"name": "ivy"}), http.StatusOK, "ok")
	c.createGuest()
	wantLimited(t, c.tryGuest(""))
}

// scrape reads one metric value from Caddy's admin /metrics endpoint.
func (s *server) scrape(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("series %s not exported:\n%s", series, body)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMetricsSurviveReload(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.Start(s.siteConfig("guest_limit global 3 1h"))
	a := s.createGuest()
	s.createGuest()
	wantEnvelope(t, s.updateUser(a.AccessToken, map[string]string{"name": "jack"}), http.StatusOK, "ok")
	s.get("/app", "not-a-jwt")
	s.createGuest()
	wantLimited(t, s.tryGuest(""))
	if r := s.signIn("jack", "wrong-password"); r.Status != http.StatusBadRequest {
		t.Fatalf("failed sign-in: %d", r.Status)
	}

	want := map[string]float64{
		"caddy_guest_auth_signin_failures_total":                                 1,
		"caddy_guest_auth_guests_created_total":                                  3,
		"caddy_guest_auth_guests_upgraded_total":                                 1,
		"caddy_guest_auth_live_guests":                                           2,
		"caddy_guest_auth_kept_guests":                                           0,
		`caddy_guest_auth_rate_limited_total{limit="global"}`:                    1,
		`caddy_guest_auth_token_verification_failures_total{reason="malformed"}`: 1,
	}
	for series, v := range want {
		if got := s.scrape(t, series); got != v {
			t.Errorf("%s = %v, want %v", series, got, v)
		}
	}
	s.Reload(s.siteConfig("require any"))
	s.createGuest()
	if got := s.scrape(t, "caddy_guest_auth_guests_created_total"); got != 4 {
		t.Fatalf("guests created after reload = %v, want 4 (counters must survive reloads)", got)
	}
	if got := s.scrape(t, "caddy_guest_auth_live_guests"); got != 3 {
		t.Fatalf("live guests after reload = %v", got)
	}
}

// hookReceiver records webhook deliveries, failing the first one to make
// the sender retry.
type hookReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	attempts int
	got      []events.Event
	bad      []string
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.attempts++
		if h.attempts == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if webhook.Verify(secret, r.Header, body, time.Now()) != nil {
			h.bad = append(h.bad, string(body))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ev events.Event
		if err := json.Unmarshal(body, &ev); err != nil || r.Header.Get(webhook.HeaderID) != ev.ID {
			h.bad = append(h.bad, string(body))
		}
		h.got = append(h.got, ev)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) waitFor(t *testing.T, n int) []events.Event {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		got, bad := append([]events.Event(nil), h.got...), h.bad
		h.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("deliveries with a bad signature or shape: %q", bad)
		}
		if len(got) >= n {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("webhook got fewer than %d events", n)
	return nil
}

func TestWebhookDeliversSignedEvents(t *testing.T) {
	t.Parallel()
	hook := newHookReceiver(t, "hook-secret")
	s := startGuestAuth(t, fmt.Sprintf("webhook %s/hook hook-secret", hook.URL))
	g := s.createGuest()
	sub := userinfo(t, s, g.AccessToken)
	wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"name": "kate", "password": "kate-password"}), http.StatusOK, "ok")

	// The first attempt failed and was retried after the backoff; the
	// upgrade, stored meanwhile, may arrive before it (deliveries are not
	// ordered: a receiver orders events by their time).
	got := hook.waitFor(t, 2)
	slices.SortFunc(got, func(a, b events.Event) int { return a.Time.Compare(b.Time) })
	created, upgraded := got[0], got[1]
	if created.Type != events.GuestCreated || created.UserID != sub["sub"] || created.ClientID != "demo-app" {
		t.Fatalf("first event: %+v", created)
	}
	if upgraded.Type != events.GuestUpgraded || upgraded.UserID != sub["sub"] || upgraded.Data["old_name"] != sub["name"] || upgraded.Data["new_name"] != "kate" {
		t.Fatalf("upgrade event: %+v", upgraded)
	}
	for _, ev := range got {
		raw, _ := json.Marshal(ev)
		if strings.Contains(string(raw), "kate-password") || strings.Contains(string(raw), g.AccessToken[:20]) {
			t.Fatalf("event carries a secret: %s", raw)
		}
	}
	if !s.HasLog(`"guest.upgraded"`) {
		t.Fatal("upgrade not logged")
	}
}

func TestIdleGuestsExpire(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "guest_ttl 3s\n\t\tsweep_interval 500ms\n\t\tactivity_flush_interval 200ms")
	idle := s.createGuest()
	active := s.createGuest()
	// Only the active guest is used (every 300ms), until a sweep expires
	// the other one; touching the idle one would count as activity.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.Logs(), `"guest.expired"`) {
		if time.Now().After(deadline) {
			t.Fatal("no guest.expired event within 10s")
		}
		if r := s.get("/app", active.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("active guest refused: %d", r.Status)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if r := s.get("/app", idle.AccessToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("expired guest still served: %d", r.Status)
	}
	if r := s.get("/app", active.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("active guest after the sweep: %d", r.Status)
	}
}

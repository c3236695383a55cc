package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	_ "github.com/caddyserver/caddy/v2/modules/standard" // the http app, static_response
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// recorder is an events.handlers module that records the events it gets.
type recorder struct{}

var recorded struct {
	mu  sync.Mutex
	evs []caddy.Event
}

func (recorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.guest_auth_test_recorder", New: func() caddy.Module { return new(recorder) }}
}

func (recorder) Handle(_ context.Context, e caddy.Event) error {
	if strings.HasPrefix(e.Name(), caddyEventPrefix) {
		recorded.mu.Lock()
		recorded.evs = append(recorded.evs, e)
		recorded.mu.Unlock()
	}
	return nil
}

var _ caddyevents.Handler = recorder{}

func init() { caddy.RegisterModule(recorder{}) }

// takeRecorded returns the guest_auth events recorded since the last call.
func takeRecorded() []caddy.Event {
	recorded.mu.Lock()
	defer recorded.mu.Unlock()
	evs := recorded.evs
	recorded.evs = nil
	return evs
}

func TestCaddyEventNames(t *testing.T) {
	for typ, want := range map[string]string{
		events.GuestCreated:         "guest_auth_guest_created",
		events.RefreshReuseDetected: "guest_auth_refresh_reuse_detected",
		events.SignInThrottled:      "guest_auth_signin_throttled",
		events.GuestMerged:          "guest_auth_guest_merged",
		"user.kept":                 "guest_auth_user_kept",
	} {
		if got := caddyEventName(typ); got != want {
			t.Errorf("caddyEventName(%q) = %q, want %q", typ, got, want)
		}
	}
}

// Every entry point reports its outcome once, through the one observer, to
// Caddy's events app: a handler subscribed in the config receives it.
func TestOutcomesReachCaddyEventsApp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	db := filepath.Join(t.TempDir(), "g.db")
	cfg := map[string]any{
		"admin": map[string]any{"disabled": true},
		"apps": map[string]any{
			"events": map[string]any{"subscriptions": []any{map[string]any{
				"handlers": []any{map[string]any{"handler": "guest_auth_test_recorder"}},
			}}},
			"http": map[string]any{"servers": map[string]any{"s": map[string]any{
				"listen":          []string{addr},
				"automatic_https": map[string]any{"disable": true},
				"routes": []any{map[string]any{"handle": []any{
					map[string]any{"handler": "guest_auth", "storage": db, "issuer": "http://" + addr,
						"clients": []any{map[string]any{"client_id": "app", "client_secret": "app-secret"}}},
					map[string]any{"handler": "static_response", "body": "upstream"},
				}}},
			}}},
		},
	}
	raw, _ := json.Marshal(cfg)
	takeRecorded()
	if err := caddy.Load(raw, true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	base := "http://" + addr

	post := func(path, token string, form url.Values, js any) *http.Response {
		t.Helper()
		var req *http.Request
		if js != nil {
			b, _ := json.Marshal(js)
			req, _ = http.NewRequest(http.MethodPost, base+path, strings.NewReader(string(b)))
			req.Header.Set("Content-Type", "application/json")
		} else {
			req, _ = http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	var toks struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	resp := post("/api/login/oauth/access_token", "", url.Values{"grant_type": {"authorization_code"}, "code": {"guest-user"}, "client_id": {"app"}, "client_secret": {"app-secret"}}, nil)
	if err := json.NewDecoder(resp.Body).Decode(&toks); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("guest: %d %v", resp.StatusCode, err)
	}
	want := func(step, name string, data map[string]any) caddy.Event {
		t.Helper()
		evs := takeRecorded()
		var names []string
		for _, e := range evs {
			names = append(names, e.Name())
		}
		if len(evs) != 1 || evs[0].Name() != name {
			t.Fatalf("%s: events %v, want exactly one %s", step, names, name)
		}
		for k, v := range data {
			if fmt.Sprint(evs[0].Data[k]) != fmt.Sprint(v) {
				t.Fatalf("%s: data %v, want %s=%v", step, evs[0].Data, k, v)
			}
		}
		if o := evs[0].Origin(); o == nil || o.CaddyModule().ID != "http.handlers.guest_auth" {
			t.Fatalf("%s: origin %v", step, o)
		}
		return evs[0]
	}
	created := want("code guest", "guest_auth_guest_created", map[string]any{"via": "code", "client_id": "app"})
	uid := created.Data["user_id"].(string)
	if uid == "" {
		t.Fatal("guest_created without user_id")
	}

	if r := post("/api/update-user", toks.AccessToken, nil, map[string]string{"name": "olive"}); r.StatusCode != http.StatusOK {
		t.Fatalf("update-user: %d", r.StatusCode)
	}
	want("upgrade", "guest_auth_guest_upgraded", map[string]any{"user_id": uid, "new_name": "olive", "client_id": "app"})

	// A spent refresh token presented again.
	r1 := post("/api/login/oauth/access_token", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {toks.RefreshToken}, "client_id": {"app"}, "client_secret": {"app-secret"}}, nil)
	if r1.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d", r1.StatusCode)
	}
	if takeRecorded() != nil {
		t.Fatal("a refresh reported an outcome")
	}
	r2 := post("/api/login/oauth/access_token", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {toks.RefreshToken}, "client_id": {"app"}, "client_secret": {"app-secret"}}, nil)
	if r2.StatusCode != http.StatusBadRequest {
		t.Fatalf("reuse: %d", r2.StatusCode)
	}
	want("reuse", "guest_auth_refresh_reuse_detected", map[string]any{"client_id": "app", "client_ip": "127.0.0.1"})

	// The admin routes go through the same Service methods.
	sh, err := findStore(db)
	if err != nil {
		t.Fatal(err)
	}
	admin := func(h adminHandler) {
		t.Helper()
		w := httptest.NewRecorder()
		if err := h(w, httptest.NewRequest(http.MethodPost, "/", nil), sh, uid); err != nil {
			t.Fatal(err)
		}
	}
	admin(adminKeepUser)
	want("admin keep", "guest_auth_user_kept", map[string]any{"user_id": uid, "kept": true, "cause": "admin"})
	admin(adminRevokeUser) // the reuse ended the only session: nothing to report
	if evs := takeRecorded(); len(evs) != 0 {
		t.Fatalf("revoking no sessions reported %d events", len(evs))
	}
	admin(adminDeleteUser)
	want("admin delete", "guest_auth_user_deleted", map[string]any{"user_id": uid, "name": "olive", "cause": "admin"})

	// Logout, with a second guest.
	resp = post("/api/login/oauth/access_token", "", url.Values{"grant_type": {"authorization_code"}, "code": {"guest-user"}, "client_id": {"app"}, "client_secret": {"app-secret"}}, nil)
	if err := json.NewDecoder(resp.Body).Decode(&toks); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("second guest: %d %v", resp.StatusCode, err)
	}
	uid = want("second guest", "guest_auth_guest_created", nil).Data["user_id"].(string)
	if r := post("/api/logout", toks.AccessToken, url.Values{}, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	want("logout", "guest_auth_session_revoked", map[string]any{"user_id": uid, "cause": "logout", "client_id": "app"})
}

// counter reads one series of the metrics registered in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no series %s{%s=%q}", name, label, value)
	return 0
}

// Each protocol's writer answers each kind of domain error in its own wire
// format, and every one of them counts limits and refused tokens.
func TestOutcomeWriters(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg); err != nil {
		t.Fatal(err)
	}
	g := &GuestAuth{logger: zap.NewNop()}
	throttled := &accounts.ThrottledError{Limit: accounts.LimitName, RetryAfter: 1500 * time.Millisecond}
	expired := &tokens.InvalidError{Reason: tokens.ReasonExpired}
	writers := map[string]func(http.ResponseWriter, error) error{
		"oauth": g.writeOAuthError, "envelope": g.writeEnvelopeError,
		"challenge": g.writeChallengeError, "bearer": g.writeBearerError,
	}
	for _, c := range []struct {
		writer string
		err    error
		status int
		body   string // a substring of the body
		header [2]string
	}{
		{"oauth", throttled, 429, `"error":"temporarily_unavailable"`, [2]string{"Retry-After", "2"}},
		{"oauth", badRequest("The code parameter is missing."), 400, `{"error":"invalid_request","error_description":"The code parameter is missing."}`, [2]string{}},
		{"oauth", clientError(true, "Client authentication failed."), 401, `"error":"invalid_client"`, [2]string{"WWW-Authenticate", `Basic realm="guest_auth"`}},
		{"oauth", errors.New("disk on fire"), 500, `{"error":"server_error","error_description":"The request could not be completed."}`, [2]string{}},
		{"envelope", throttled, 429, `"status":"error"`, [2]string{"Retry-After", "2"}},
		{"envelope", &accounts.Error{Code: accounts.CodeNameTaken, Description: "taken"}, 409, `"data":"name_taken"`, [2]string{}},
		{"envelope", expired, 401, `"data":"invalid_token"`, [2]string{"WWW-Authenticate", `Bearer realm="guest_auth", error="invalid_token", error_description="The access token expired."`}},
		{"envelope", errNoToken, 401, `"msg":"An access token is required."`, [2]string{"WWW-Authenticate", `Bearer realm="guest_auth"`}},
		{"envelope", errors.New("disk on fire"), 500, `"msg":"The request could not be completed."`, [2]string{}},
		{"challenge", throttled, 429, `"reason":"RateLimited"`, [2]string{"Retry-After", "2"}},
		{"challenge", badRequest("bad purpose"), 400, `"reason":"ValidationFailed"`, [2]string{}},
		{"challenge", errors.New("disk on fire"), 500, `"reason":"UnexpectedError"`, [2]string{}},
		{"bearer", expired, 401, `{"error":"invalid_token","error_description":"The access token expired."}`, [2]string{"WWW-Authenticate", `Bearer realm="guest_auth", error="invalid_token", error_description="The access token expired."`}},
		{"bearer", errMalformedAuthz, 400, `"error":"invalid_request"`, [2]string{}},
		{"bearer", errNoToken, 401, `{"error":"unauthorized","error_description":"An access token is required."}`, [2]string{"WWW-Authenticate", `Bearer realm="guest_auth"`}},
	} {
		t.Run(fmt.Sprintf("%s %T %d", c.writer, c.err, c.status), func(t *testing.T) {
			limited := counter(t, reg, "caddy_guest_auth_rate_limited_total", "limit", "name")
			rejected := counter(t, reg, "caddy_guest_auth_token_verification_failures_total", "reason", "expired")
			w := httptest.NewRecorder()
			_ = writers[c.writer](w, c.err)
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.body) {
				t.Fatalf("%d %s, want %d with %s", w.Code, w.Body, c.status, c.body)
			}
			if c.header[0] != "" && w.Header().Get(c.header[0]) != c.header[1] {
				t.Fatalf("%s: %q, want %q", c.header[0], w.Header().Get(c.header[0]), c.header[1])
			}
			wantLimited, wantRejected := limited, rejected
			if c.err == error(throttled) {
				wantLimited++
			}
			if c.err == error(expired) {
				wantRejected++
			}
			if got := counter(t, reg, "caddy_guest_auth_rate_limited_total", "limit", "name"); got != wantLimited {
				t.Fatalf("rate_limited_total{limit=name} = %v, want %v", got, wantLimited)
			}
			if got := counter(t, reg, "caddy_guest_auth_token_verification_failures_total", "reason", "expired"); got != wantRejected {
				t.Fatalf("token failures{reason=expired} = %v, want %v", got, wantRejected)
			}
		})
	}
}

// A request whose client went away (its context cancelled while the store
// was read) is no server fault: every writer records 499, as reverse_proxy
// does, writes no body and logs nothing at error level.
func TestClientGoneIsNotAServerFault(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	g := &GuestAuth{logger: zap.New(core)}
	gone := fmt.Errorf("reading the session: %w", context.Canceled)
	for name, write := range map[string]func(http.ResponseWriter, error) error{
		"oauth": g.writeOAuthError, "envelope": g.writeEnvelopeError,
		"challenge": g.writeChallengeError, "bearer": g.writeBearerError,
	} {
		w := httptest.NewRecorder()
		if err := write(w, gone); err != nil || w.Code != 499 || w.Body.Len() != 0 {
			t.Errorf("%s: %d %q, error %v; want 499, no body, no error", name, w.Code, w.Body, err)
		}
	}
	if n := logs.Len(); n != 0 {
		t.Fatalf("%d log entries at info or above: %v", n, logs.All())
	}
}

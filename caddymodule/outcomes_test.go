package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	_ "github.com/caddyserver/caddy/v2/modules/standard" // the http app, static_response

	"github.com/guestauth/caddy-guestauth/internal/events"
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
	if strings.HasPrefix(e.Name(), "guest_auth_") {
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
		if got := events.CaddyName(typ); got != want {
			t.Errorf("events.CaddyName(%q) = %q, want %q", typ, got, want)
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
	route := (&AdminAPI{}).Routes()[0].Handler
	admin := func(method, path string) {
		t.Helper()
		w := httptest.NewRecorder()
		if err := route.ServeHTTP(w, httptest.NewRequest(method, path+"?storage="+url.QueryEscape(db), nil)); err != nil || w.Code != http.StatusOK {
			t.Fatalf("%s %s: %d %s %v", method, path, w.Code, w.Body, err)
		}
	}
	admin(http.MethodPost, "/guest_auth/users/"+uid+"/keep")
	want("admin keep", "guest_auth_user_kept", map[string]any{"user_id": uid, "kept": true, "cause": "admin"})
	admin(http.MethodPost, "/guest_auth/users/"+uid+"/revoke") // the reuse ended the only session: nothing to report
	if evs := takeRecorded(); len(evs) != 0 {
		t.Fatalf("revoking no sessions reported %d events", len(evs))
	}
	admin(http.MethodDelete, "/guest_auth/users/"+uid)
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

	// The guest lost its last session: the admin's sweep expires it.
	admin(http.MethodPost, "/guest_auth/prune")
	want("admin prune", "guest_auth_guest_expired", map[string]any{"user_id": uid, "reason": "orphaned"})
}

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	_ "github.com/guestauth/caddy-guestauth/storage/bolt" // the default kind
)

const issuer = "https://app.example.com"

// testSite is a real Service on a real bbolt store behind the admin routes,
// recording the events its Service reports.
type testSite struct {
	t     *testing.T
	store storage.Backend
	svc   *accounts.Service
	route caddy.AdminHandler

	mu     sync.Mutex
	events []events.Event
}

func newTestSite(t *testing.T) *testSite {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "g.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	s := &testSite{t: t, store: st}
	observe := func(_ context.Context, ev events.Event, _ bool) {
		s.mu.Lock()
		s.events = append(s.events, ev)
		s.mu.Unlock()
	}
	s.svc, err = accounts.New(ctx, st, keys, accounts.Config{
		Alg: jwa.ES256, AccessTTL: time.Hour, SessionIdle: time.Hour, SessionLifetime: time.Hour,
		Audiences: []string{"app"}, Observer: observe,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	target := Target{Store: st, Site: &Site{
		Accounts: s.svc,
		Prune: func(ctx context.Context, dryRun bool) (*accounts.PruneReport, error) {
			return accounts.Prune(ctx, st, time.Now(), accounts.PruneOptions{IdleTTL: time.Hour, DryRun: dryRun, Batch: 100, MaxListed: 1000, Observer: observe}, nil)
		},
		RotateKey: func(ctx context.Context) (string, string, error) {
			kid, err := keys.Rotate(ctx, jwa.ES256)
			return kid, jwa.ES256.String(), err
		},
	}}
	s.route = Routes(func(name string) (Target, error) {
		switch name {
		case "", "g.db":
			return target, nil
		case "closing.db": // open, but no config uses it any more
			return Target{Store: st}, nil
		}
		return Target{}, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no guest_auth storage is open at %q", name)}
	})[0].Handler
	return s
}

// call answers one request as Caddy's admin endpoint would: the status and
// body, or those of the API error returned.
func (s *testSite) call(method, path, body string) (status int, allow, text string) {
	s.t.Helper()
	w := httptest.NewRecorder()
	err := s.route.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
	if err != nil {
		var ae caddy.APIError
		if !errors.As(err, &ae) {
			s.t.Fatalf("%s %s: %v", method, path, err)
		}
		return ae.HTTPStatus, w.Header().Get("Allow"), ae.Err.Error()
	}
	return w.Code, w.Header().Get("Allow"), w.Body.String()
}

// took returns the events reported since the last call.
func (s *testSite) took() []events.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	evs := s.events
	s.events = nil
	return evs
}

func (s *testSite) guest() string {
	s.t.Helper()
	g, err := s.svc.CreateGuest(context.Background(), issuer, "app", "192.0.2.1")
	if err != nil {
		s.t.Fatal(err)
	}
	s.took()
	return g.User.ID
}

// The admin routes' answers by method and path: 405 with the Allow header
// for a known path, 404 for any other, and the route's own answer (its id
// taken from the path) otherwise.
func TestAdminRouting(t *testing.T) {
	s := newTestSite(t)
	id := s.guest()
	for _, c := range []struct {
		method, path string
		status       int
		allow, want  string
	}{
		{"POST", "/guest_auth/users", 405, "GET", "method POST not allowed on /guest_auth/users (allowed: GET)"},
		{"HEAD", "/guest_auth/stats", 405, "GET", "not allowed"},
		{"PUT", "/guest_auth/users/" + id, 405, "DELETE, GET", "(allowed: DELETE, GET)"},
		{"GET", "/guest_auth/users/" + id + "/keep", 405, "POST", "not allowed"},
		{"DELETE", "/guest_auth/users/" + id + "/revoke", 405, "POST", "not allowed"},
		{"GET", "/guest_auth/prune", 405, "POST", "not allowed"},
		{"POST", "/guest_auth/backup", 405, "GET", "not allowed"},
		{"GET", "/guest_auth/keys/rotate", 405, "POST", "not allowed"},
		{"GET", "/guest_auth/nothing", 404, "", "no guest_auth admin route at /guest_auth/nothing"},
		{"GET", "/guest_auth/users/", 404, "", "no guest_auth admin route"},
		{"GET", "/guest_auth/users/" + id + "/", 404, "", "no guest_auth admin route"},
		{"POST", "/guest_auth/users/" + id + "/other", 404, "", "no guest_auth admin route"},
		{"GET", "/guest_auth/stats?storage=/nowhere.db", 404, "", `no guest_auth storage is open at "/nowhere.db"`},
		{"GET", "/guest_auth/users/nobody", 404, "", `no user with id "nobody"`},
		{"GET", "/guest_auth/users?tag=admin", 400, "", "tag must be guest-user or normal-user"},
		{"GET", "/guest_auth/users?limit=0", 400, "", "limit must be a positive integer"},
		{"GET", "/guest_auth/users/" + id, 200, "", `"id":"` + id + `"`},
		{"GET", "/guest_auth/users/" + id, 200, "", `"identities":0`},
		{"GET", "/guest_auth/users/" + id + "/identities", 200, "", `{"identities":[]}`},
		{"GET", "/guest_auth/users/nobody/identities", 404, "", `no user with id "nobody"`},
		{"POST", "/guest_auth/users/" + id + "/identities", 405, "GET", "not allowed"},
		{"GET", "/guest_auth/users/" + id + "/passkeys", 200, "", `{"passkeys":[]}`},
		{"GET", "/guest_auth/users/nobody/passkeys", 404, "", `no user with id "nobody"`},
		{"DELETE", "/guest_auth/users/" + id + "/passkeys", 405, "GET", "not allowed"},
		{"GET", "/guest_auth/users?storage=g.db", 200, "", `"id":"` + id + `"`},
		{"POST", "/guest_auth/users/" + id + "/keep", 200, "", `"kept":true`},
		{"POST", "/guest_auth/users/" + id + "/revoke", 200, "", `"revoked":1`},
		{"GET", "/guest_auth/stats", 200, "", `"users":1`},
		{"POST", "/guest_auth/prune?dry_run=maybe", 400, "", "dry_run must be true or false"},
		{"DELETE", "/guest_auth/users/" + id, 200, "", `"deleted":true`},
		{"DELETE", "/guest_auth/users/" + id, 404, "", `no user with id "` + id + `"`},
	} {
		status, allow, body := s.call(c.method, c.path, "")
		if status != c.status || allow != c.allow || !strings.Contains(body, c.want) {
			t.Errorf("%s %s: %d Allow %q %s; want %d Allow %q with %s", c.method, c.path, status, allow, body, c.status, c.allow, c.want)
		}
	}
}

// Every admin write goes through the Service and reports its event, as the
// same write made by a request does.
func TestAdminWritesReportEvents(t *testing.T) {
	s := newTestSite(t)
	type want struct {
		typ  string
		data map[string]any
	}
	id := s.guest()
	for _, c := range []struct {
		method, path, body string
		status             int
		want               []want
	}{
		{"POST", "/guest_auth/users/" + id + "/keep", "", 200, []want{{accounts.UserKept, map[string]any{"kept": true, "cause": "admin"}}}},
		{"POST", "/guest_auth/users/" + id + "/keep", `{"kept": false}`, 200, []want{{accounts.UserKept, map[string]any{"kept": false, "cause": "admin"}}}},
		{"POST", "/guest_auth/users/" + id + "/revoke", "", 200, []want{{events.SessionRevoked, map[string]any{"sessions": 1, "cause": "admin"}}}},
		// No session left: nothing revoked, nothing to report.
		{"POST", "/guest_auth/users/" + id + "/revoke", "", 200, nil},
		// The guest lost its last session: orphaned. A dry run reports
		// nothing; the sweep reports guest.expired.
		{"POST", "/guest_auth/prune?dry_run=true", "", 200, nil},
		{"POST", "/guest_auth/prune", "", 200, []want{{events.GuestExpired, map[string]any{"reason": accounts.PruneOrphan}}}},
		{"POST", "/guest_auth/keys/rotate", "", 200, nil},
	} {
		status, _, body := s.call(c.method, c.path, c.body)
		evs := s.took()
		if status != c.status || len(evs) != len(c.want) {
			t.Fatalf("%s %s: %d %s, events %+v; want %d and %d events", c.method, c.path, status, body, evs, c.status, len(c.want))
		}
		for i, w := range c.want {
			if evs[i].Type != w.typ || evs[i].UserID != id {
				t.Fatalf("%s %s: event %+v, want %s of %s", c.method, c.path, evs[i], w.typ, id)
			}
			for k, v := range w.data {
				if fmt.Sprint(evs[i].Data[k]) != fmt.Sprint(v) {
					t.Fatalf("%s %s: %s data %v, want %s=%v", c.method, c.path, w.typ, evs[i].Data, k, v)
				}
			}
		}
	}
	id = s.guest()
	if status, _, body := s.call("DELETE", "/guest_auth/users/"+id, ""); status != 200 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if evs := s.took(); len(evs) != 1 || evs[0].Type != events.UserDeleted || evs[0].UserID != id || evs[0].Data["cause"] != "admin" || evs[0].Data["tag"] != model.TagGuest {
		t.Fatalf("delete reported %+v, want one user.deleted", evs)
	}
}

// While no config uses the store (it is opening or closing), there is
// nowhere to report an event: every write is refused 503 and changes
// nothing; reads still answer.
func TestAdminWritesNeedAConfig(t *testing.T) {
	s := newTestSite(t)
	id := s.guest()
	for _, c := range []struct{ method, path string }{
		{"DELETE", "/guest_auth/users/" + id},
		{"POST", "/guest_auth/users/" + id + "/keep"},
		{"POST", "/guest_auth/users/" + id + "/revoke"},
		{"POST", "/guest_auth/prune"},
		{"POST", "/guest_auth/keys/rotate"},
	} {
		status, _, body := s.call(c.method, c.path+"?storage=closing.db", "")
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "no config is using") {
			t.Errorf("%s %s: %d %s, want 503", c.method, c.path, status, body)
		}
	}
	u, err := s.store.GetUser(context.Background(), id)
	if err != nil || u.Kept {
		t.Fatalf("after refused writes: %+v, %v", u, err)
	}
	if n, err := s.store.DeleteUserSessions(context.Background(), id, "", nil); err != nil || n != 1 {
		t.Fatalf("the session: %d, %v; want it still there", n, err)
	}
	if evs := s.took(); len(evs) != 0 {
		t.Fatalf("refused writes reported %+v", evs)
	}
	if status, _, body := s.call("GET", "/guest_auth/users/"+id+"?storage=closing.db", ""); status != 200 || !strings.Contains(body, id) {
		t.Fatalf("read: %d %s", status, body)
	}
}

// A member's linked provider accounts are listed, oldest first.
func TestAdminUserIdentities(t *testing.T) {
	s := newTestSite(t)
	login, _, err := s.svc.ProviderSignIn(context.Background(), nil, issuer, accounts.ProviderIdentity{Provider: "testidp", Issuer: "https://idp.example", Subject: "sub-1"}, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	id := login.User.ID
	status, _, body := s.call("GET", "/guest_auth/users/"+id+"/identities", "")
	if status != 200 || !strings.Contains(body, `"provider":"testidp","issuer":"https://idp.example","subject":"sub-1","linked_at":"`) {
		t.Fatalf("identities: %d %s", status, body)
	}
	if status, _, body := s.call("GET", "/guest_auth/users/"+id, ""); status != 200 || !strings.Contains(body, `"identities":1`) {
		t.Fatalf("user: %d %s", status, body)
	}
}

// A user's passkeys are listed by id and label, never with their keys.
func TestAdminUserPasskeys(t *testing.T) {
	s := newTestSite(t)
	login, _, err := s.svc.ProviderSignIn(context.Background(), nil, issuer, accounts.ProviderIdentity{Provider: "testidp", Issuer: "https://idp.example", Subject: "sub-1"}, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	id := login.User.ID
	pk := &model.Passkey{ID: "Y3JlZC0x", UserID: id, Name: "work laptop", CreatedAt: time.Now(), Credential: json.RawMessage(`{"publicKey":"c2VjcmV0LWlzaA"}`)}
	if _, err := s.store.AddPasskey(context.Background(), pk, nil, nil); err != nil {
		t.Fatal(err)
	}
	status, _, body := s.call("GET", "/guest_auth/users/"+id+"/passkeys", "")
	if status != 200 || !strings.Contains(body, `{"passkeys":[{"id":"Y3JlZC0x","name":"work laptop","created_at":"`) || !strings.Contains(body, `"last_used_at":null`) ||
		strings.Contains(body, "c2VjcmV0LWlzaA") {
		t.Fatalf("passkeys: %d %s", status, body)
	}
	if status, _, body := s.call("GET", "/guest_auth/users/"+id, ""); status != 200 || !strings.Contains(body, `"passkeys":1`) {
		t.Fatalf("user: %d %s", status, body)
	}
}

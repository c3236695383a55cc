package caddymodule

import (
	"context"
	"errors"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// The admin routes' answers by method and path: 405 with the Allow header
// for a known path, 404 for any other, and the route's own answer (its id
// taken from the path) otherwise.
func TestAdminRouting(t *testing.T) {
	db := filepath.Join(t.TempDir(), "g.db")
	l := loadHandler(t, db, nil)
	defer l.unload(t)
	g, err := l.svc.CreateGuest(context.Background(), l.issuer, "app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	id := g.User.ID
	q := "?storage=" + url.QueryEscape(db)
	api := &AdminAPI{}
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
		{"GET", "/guest_auth/nothing", 404, "", "no guest_auth admin route at /guest_auth/nothing"},
		{"GET", "/guest_auth/users/", 404, "", "no guest_auth admin route"},
		{"GET", "/guest_auth/users/" + id + "/", 404, "", "no guest_auth admin route"},
		{"POST", "/guest_auth/users/" + id + "/other", 404, "", "no guest_auth admin route"},
		{"GET", "/guest_auth/stats?storage=/nowhere.db", 404, "", `no guest_auth storage is open at "/nowhere.db"`},
		{"GET", "/guest_auth/users/nobody" + q, 404, "", `no user with id "nobody"`},
		{"GET", "/guest_auth/users/" + id + q, 200, "", `"id":"` + id + `"`},
		{"GET", "/guest_auth/users" + q, 200, "", `"id":"` + id + `"`},
		{"POST", "/guest_auth/users/" + id + "/keep" + q, 200, "", `"kept":true`},
		{"POST", "/guest_auth/users/" + id + "/revoke" + q, 200, "", `"revoked":1`},
		{"GET", "/guest_auth/stats" + q, 200, "", `"users":1`},
		{"DELETE", "/guest_auth/users/" + id + q, 200, "", `"deleted":true`},
	} {
		name := c.method + " " + c.path
		w := httptest.NewRecorder()
		err := api.serve(w, httptest.NewRequest(c.method, c.path, nil))
		status, body := w.Code, w.Body.String()
		if err != nil {
			var ae caddy.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("%s: %v", name, err)
			}
			status, body = ae.HTTPStatus, ae.Err.Error()
		}
		if status != c.status || w.Header().Get("Allow") != c.allow || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d Allow %q %s; want %d Allow %q with %s", name, status, w.Header().Get("Allow"), body, c.status, c.allow, c.want)
		}
	}
}

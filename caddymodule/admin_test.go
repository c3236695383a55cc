package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// While no config uses an open store (between a config's detach and the
// store's close, or before the first one attaches), the admin routes have
// no Service to write through, so no event could be reported: every write
// is refused 503 and the store is left as it was. (They used to write the
// store directly, reporting nothing.)
func TestAdminWritesWithoutAConfig(t *testing.T) {
	db := filepath.Join(t.TempDir(), "g.db")
	l := loadHandler(t, db, nil)
	defer l.unload(t)
	g, err := l.svc.CreateGuest(context.Background(), l.issuer, "app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	id := g.User.ID
	l.shared.detach(l.GuestAuth)
	route := (&AdminAPI{}).Routes()[0].Handler
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/guest_auth/users/" + id + "/keep"},
		{http.MethodPost, "/guest_auth/users/" + id + "/revoke"},
		{http.MethodDelete, "/guest_auth/users/" + id},
	} {
		w := httptest.NewRecorder()
		err := route.ServeHTTP(w, httptest.NewRequest(c.method, c.path+"?storage="+url.QueryEscape(db), nil))
		if status := apiStatus(w, err); status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d, want 503", c.method, c.path, status)
		}
	}
	u, err := l.shared.store.GetUser(context.Background(), id)
	if err != nil || u.Kept {
		t.Fatalf("the guest after refused writes: %+v, %v", u, err)
	}
	if _, err := l.svc.Authenticate(context.Background(), g.Tokens.AccessToken, l.issuer); err != nil {
		t.Fatalf("the guest's session after a refused revoke: %v", err)
	}
}

// apiStatus is the status Caddy's admin endpoint answers: the API error's,
// else the recorded one.
func apiStatus(w *httptest.ResponseRecorder, err error) int {
	if ae, ok := errors.AsType[caddy.APIError](err); ok {
		return ae.HTTPStatus
	}
	return w.Code
}

package admin_test

import (
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/guestauth/caddy-guestauth/internal/admin"
)

func TestPickStore(t *testing.T) {
	t.Parallel()
	abs, err := filepath.Abs("g.db")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		open         []string
		param, want  string
		status       int
		errSubstring string
	}{
		{open: []string{abs}, param: "", want: abs},
		{open: []string{abs}, param: "g.db", want: abs}, // resolved like the config's path
		{open: []string{abs, "postgres:postgres://u@h:5432/db"}, param: "postgres:postgres://u@h:5432/db", want: "postgres:postgres://u@h:5432/db"},
		{open: []string{"b", "a"}, param: "", status: http.StatusBadRequest, errSubstring: "several guest_auth storage files are open; name one (the storage parameter, or --storage on the command line): a, b"},
		{open: nil, param: "", status: http.StatusNotFound, errSubstring: "no guest_auth storage is open (is guest_auth in the running config?)"},
		{open: []string{abs}, param: "other.db", status: http.StatusNotFound, errSubstring: "no guest_auth storage is open at"},
	} {
		got, err := admin.PickStore(c.open, c.param)
		var apiErr caddy.APIError
		switch {
		case c.status == 0 && (err != nil || got != c.want):
			t.Errorf("%v %q: got %q, %v; want %q", c.open, c.param, got, err, c.want)
		case c.status != 0 && (!errors.As(err, &apiErr) || apiErr.HTTPStatus != c.status || !strings.Contains(err.Error(), c.errSubstring)):
			t.Errorf("%v %q: got %q, %v; want %d %q", c.open, c.param, got, err, c.status, c.errSubstring)
		}
	}
}

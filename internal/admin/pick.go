package admin

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// PickStore is the key, among the open stores' keys, that a request's
// storage parameter names: a key as it is (another kind's
// "<kind>:<location>"), or a bbolt file's path, resolved like the
// config's (relative to Caddy's working directory); "" names the only
// open store. Its errors are caddy.APIErrors: 404 when nothing open
// matches, 400 when the choice is ambiguous or the path unusable.
func PickStore(open []string, param string) (string, error) {
	if slices.Contains(open, param) && param != "" {
		return param, nil
	}
	if param != "" {
		abs, err := filepath.Abs(param)
		if err != nil {
			return "", caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("storage %q: %v", param, err)}
		}
		if slices.Contains(open, abs) {
			return abs, nil
		}
		return "", caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no guest_auth storage is open at %q", abs)}
	}
	switch len(open) {
	case 1:
		return open[0], nil
	case 0:
		return "", caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("no guest_auth storage is open (is guest_auth in the running config?)")}
	}
	open = slices.Sorted(slices.Values(open))
	return "", caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("several guest_auth storage files are open; name one (the storage parameter, or --storage on the command line): %s", strings.Join(open, ", "))}
}

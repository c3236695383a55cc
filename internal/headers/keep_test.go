package headers_test

import (
	"net/http"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/headers"
)

// The keep header is removed under the configured name and the default
// one, and marks the guest only when it says true under the configured
// name.
func TestTakeKeep(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		set      map[string]string
		has, yes bool
	}{
		{headers.DefaultKeep, map[string]string{headers.DefaultKeep: " TRUE "}, true, true},
		{headers.DefaultKeep, map[string]string{headers.DefaultKeep: "false"}, true, false},
		{headers.DefaultKeep, map[string]string{}, false, false},
		{"X-Keep", map[string]string{"X-Keep": "true", headers.DefaultKeep: "true"}, true, true},
		{"X-Keep", map[string]string{headers.DefaultKeep: "true"}, true, false}, // the default name marks nothing then
	} {
		h := http.Header{"Other": {"1"}}
		for k, v := range c.set {
			h.Set(k, v)
		}
		if got := headers.HasKeep(h, c.name); got != c.has {
			t.Errorf("%s %v: HasKeep = %v", c.name, c.set, got)
		}
		if got := headers.TakeKeep(h, c.name); got != c.yes {
			t.Errorf("%s %v: TakeKeep = %v", c.name, c.set, got)
		}
		if len(h) != 1 || headers.HasKeep(h, c.name) {
			t.Errorf("%s %v: left %v", c.name, c.set, h)
		}
	}
}

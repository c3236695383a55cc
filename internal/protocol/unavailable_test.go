package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// A store that cannot be reached is a 503 with Retry-After in every
// endpoint's format, never a 500 with the driver's message; other store
// failures stay 500s.
func TestStoreUnavailableIs503(t *testing.T) {
	h := &Handler{Logger: zap.NewNop()}
	down := fmt.Errorf("%w: postgres: dial tcp 10.0.0.5:5432: connect: connection refused", model.ErrUnavailable)
	for name, write := range map[string]func(http.ResponseWriter, error) error{
		"bearer":    h.WriteBearerError,
		"token":     h.writeOAuthError,
		"envelope":  h.writeEnvelopeError,
		"challenge": h.writeChallengeError,
	} {
		w := httptest.NewRecorder()
		if err := write(w, down); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
			t.Fatalf("%s: %d, Retry-After %q", name, w.Code, w.Header().Get("Retry-After"))
		}
		if body := w.Body.String(); strings.Contains(body, "10.0.0.5") || strings.Contains(body, "refused") || !json.Valid([]byte(body)) {
			t.Fatalf("%s: body %s", name, body)
		}
		w = httptest.NewRecorder()
		err := write(w, errors.New("disk on fire"))
		if code := w.Code; err == nil && code != http.StatusInternalServerError {
			t.Fatalf("%s: another failure answered %d", name, code)
		}
		if w.Header().Get("Retry-After") != "" {
			t.Fatalf("%s: Retry-After on a 500", name)
		}
	}
}

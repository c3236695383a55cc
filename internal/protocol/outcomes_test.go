package protocol

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

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
	h := &Handler{Logger: zap.NewNop()}
	throttled := &accounts.ThrottledError{Limit: accounts.LimitName, RetryAfter: 1500 * time.Millisecond}
	expired := &tokens.InvalidError{Reason: tokens.ReasonExpired}
	writers := map[string]func(http.ResponseWriter, error) error{
		"oauth": h.writeOAuthError, "envelope": h.writeEnvelopeError,
		"challenge": h.writeChallengeError, "bearer": h.WriteBearerError,
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
	h := &Handler{Logger: zap.New(core)}
	gone := fmt.Errorf("reading the session: %w", context.Canceled)
	for name, write := range map[string]func(http.ResponseWriter, error) error{
		"oauth": h.writeOAuthError, "envelope": h.writeEnvelopeError,
		"challenge": h.writeChallengeError, "bearer": h.WriteBearerError,
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

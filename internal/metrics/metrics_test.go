package metrics_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/metrics"
)

// The collectors are process-wide, so tests compare values before and
// after rather than expecting zeros.

func newRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

// value gathers reg and returns the sample of name whose labels include
// the given name/value pairs (-1 when absent).
func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

func TestCountersIncrement(t *testing.T) {
	reg := newRegistry(t)
	for _, tc := range []struct {
		name   string
		labels []string
		inc    func()
		by     float64
	}{
		{"caddy_guest_auth_guests_created_total", nil, metrics.GuestCreated, 1},
		{"caddy_guest_auth_guests_upgraded_total", nil, func() { metrics.GuestUpgraded("passkey") }, 1},
		{"caddy_guest_auth_guests_upgraded_by_method_total", []string{"method", "passkey"}, func() { metrics.GuestUpgraded("passkey") }, 1},
		{"caddy_guest_auth_guests_upgraded_by_method_total", []string{"method", "other"}, func() { metrics.GuestUpgraded("made-up") }, 1},
		{"caddy_guest_auth_guests_merged_total", nil, metrics.GuestMerged, 1},
		{"caddy_guest_auth_users_deleted_total", nil, metrics.UserDeleted, 1},
		{"caddy_guest_auth_guests_expired_total", nil, func() { metrics.GuestsExpired(3) }, 3},
		{"caddy_guest_auth_guests_expired_total", nil, func() { metrics.GuestsExpired(0); metrics.GuestsExpired(-2) }, 0},
		{"caddy_guest_auth_signin_failures_total", nil, metrics.SignInFailed, 1},
		{"caddy_guest_auth_webhook_dropped_total", []string{"type", "signin.throttled"}, func() { metrics.WebhookDropped(events.SignInThrottled) }, 1},
		{"caddy_guest_auth_webhook_dropped_total", []string{"type", "guest.upgraded"}, func() { metrics.WebhookDropped(events.GuestUpgraded) }, 1},
		{"caddy_guest_auth_webhook_dropped_total", []string{"type", "other"}, func() { metrics.WebhookDropped("made.up") }, 1},
		{"caddy_guest_auth_rate_limited_total", []string{"limit", "ip"}, func() { metrics.RateLimited(metrics.LimitIP) }, 1},
		{"caddy_guest_auth_rate_limited_total", []string{"limit", "cap"}, func() { metrics.RateLimited("cap") }, 1},
		{"caddy_guest_auth_token_verification_failures_total", []string{"reason", "expired"}, func() { metrics.TokenRejected(metrics.ReasonExpired) }, 1},
		{"caddy_guest_auth_token_verification_failures_total", []string{"reason", "session_ended"}, func() { metrics.TokenRejected("session_ended") }, 1},
	} {
		before := value(t, reg, tc.name, tc.labels...)
		if before < 0 {
			t.Fatalf("%s%v not exported", tc.name, tc.labels)
		}
		tc.inc()
		if after := value(t, reg, tc.name, tc.labels...); after != before+tc.by {
			t.Errorf("%s%v went from %v to %v, want +%v", tc.name, tc.labels, before, after, tc.by)
		}
	}
}

func TestUnknownLabelCountsAsOther(t *testing.T) {
	reg := newRegistry(t)
	const reasons = "caddy_guest_auth_token_verification_failures_total"
	before := value(t, reg, reasons, "reason", "other")
	metrics.TokenRejected("token is expired at 2025-01-01T00:00:00Z") // free text by mistake
	if got := value(t, reg, reasons, "reason", "other"); got != before+1 {
		t.Errorf("other = %v, want %v", got, before+1)
	}
	if value(t, reg, reasons, "reason", "token is expired at 2025-01-01T00:00:00Z") >= 0 {
		t.Error("free text became a label value")
	}
	before = value(t, reg, "caddy_guest_auth_rate_limited_total", "limit", "other")
	metrics.RateLimited("IP")
	if got := value(t, reg, "caddy_guest_auth_rate_limited_total", "limit", "other"); got != before+1 {
		t.Errorf("other = %v, want %v", got, before+1)
	}
}

// Mail is counted by kind; a failure that gives up counts in both.
func TestMailCounters(t *testing.T) {
	reg := newRegistry(t)
	q := value(t, reg, "caddy_guest_auth_mail_queued_total", "kind", "reset")
	s := value(t, reg, "caddy_guest_auth_mail_sent_total", "kind", "reset")
	f := value(t, reg, "caddy_guest_auth_mail_failed_total", "kind", "signin")
	g := value(t, reg, "caddy_guest_auth_mail_given_up_total", "kind", "signin")
	metrics.MailQueued("reset")
	metrics.MailSent("reset")
	metrics.MailFailed("signin", false)
	metrics.MailFailed("signin", true)
	if value(t, reg, "caddy_guest_auth_mail_queued_total", "kind", "reset") != q+1 ||
		value(t, reg, "caddy_guest_auth_mail_sent_total", "kind", "reset") != s+1 ||
		value(t, reg, "caddy_guest_auth_mail_failed_total", "kind", "signin") != f+2 ||
		value(t, reg, "caddy_guest_auth_mail_given_up_total", "kind", "signin") != g+1 {
		t.Fatal("mail counters did not count")
	}
}

func TestAllSeriesExportedAndLintClean(t *testing.T) {
	reg := newRegistry(t)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, f := range families {
		series += len(f.GetMetric())
		if !strings.HasPrefix(f.GetName(), "caddy_guest_auth_") {
			t.Errorf("metric %s lacks the caddy_guest_auth_ prefix", f.GetName())
		}
	}
	// 8 plain counters, 6 limits + other, 7 reasons + other, 9 event types
	// + other, 4 methods + other, 4 gauges, 4 mail counters of 4 kinds +
	// other.
	if len(families) != 20 || series != 8+7+8+10+5+4+4*5 {
		t.Errorf("%d families, %d series; want 20 and 62", len(families), series)
	}
	problems, err := promlint.NewWithMetricFamilies(families).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// A config reload registers the same collectors into a new registry: both
// must work and show the same, continuing values.
func TestRegisterAcrossReload(t *testing.T) {
	old := newRegistry(t)
	if err := metrics.Register(old); err != nil {
		t.Fatalf("second Register into the same registry: %v", err)
	}
	metrics.GuestCreated()
	before := value(t, old, "caddy_guest_auth_guests_created_total")

	reloaded := newRegistry(t)
	if got := value(t, reloaded, "caddy_guest_auth_guests_created_total"); got != before {
		t.Fatalf("after reload: %v, want %v carried over", got, before)
	}
	metrics.GuestCreated()
	for _, reg := range []*prometheus.Registry{old, reloaded} {
		if got := value(t, reg, "caddy_guest_auth_guests_created_total"); got != before+1 {
			t.Errorf("got %v, want %v", got, before+1)
		}
	}
}

func TestRegisterConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "caddy_guest_auth_guests_created_total", Help: "an impostor"}))
	if err := metrics.Register(reg); err == nil {
		t.Error("Register hid a different collector under the same name")
	}
	if err := metrics.Register(nil); err != nil {
		t.Errorf("Register(nil) = %v", err)
	}
}

func TestGaugeReadsSourceAtScrape(t *testing.T) {
	t.Cleanup(func() { metrics.SetGaugeSource(nil) })
	reg := newRegistry(t)
	read := func() (float64, float64) {
		return value(t, reg, "caddy_guest_auth_live_guests"), value(t, reg, "caddy_guest_auth_kept_guests")
	}

	metrics.SetGaugeSource(nil)
	if live, kept := read(); live != 0 || kept != 0 {
		t.Errorf("no source: %v, %v; want 0, 0", live, kept)
	}

	var live atomic.Int64
	var calls atomic.Int64
	metrics.SetGaugeSource(func() (int64, int64) { return -1, -1 }) // replaced below
	metrics.SetGaugeSource(func() (int64, int64) { calls.Add(1); return live.Load(), 7 })
	live.Store(42)
	if l, k := read(); l != 42 || k != 7 {
		t.Errorf("got %v, %v; want 42, 7", l, k)
	}
	live.Store(43)
	if l, _ := read(); l != 43 {
		t.Errorf("got %v after the store changed, want 43", l)
	}
	if n := calls.Load(); n != 4 { // each read is two scrapes
		t.Errorf("source called %d times for 4 scrapes", n)
	}
}

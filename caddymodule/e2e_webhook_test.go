package caddymodule_test

import "testing"

// A webhook over plain http is refused at config load unless it stays on
// this host: events would travel readable.
func TestWebhookURLMustBeHTTPS(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"http://hooks.example.com/guestauth", "http://10.0.0.5:8080/hook"} {
		s := newServer(t)
		if err := s.tryStart(s.siteConfig("webhook " + url + " hook-secret")); err == nil {
			t.Fatalf("caddy started with webhook %s", url)
		}
		if !s.HasLog("must be https unless the host is loopback") {
			t.Fatalf("%s: logs lack the reason:\n%s", url, s.Logs())
		}
	}
	// Control: https anywhere, and http to loopback, start.
	startGuestAuth(t, "webhook https://hooks.example.com/guestauth hook-secret")
	startGuestAuth(t, "webhook http://localhost:9/hook hook-secret")
}

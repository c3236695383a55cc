package events_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/webhook"
)

// Attempt posts a stored body once, signed like any delivery, and says
// whether to retry; Target names the URL without holding it or the secret.
func TestWebhookAttemptAndTarget(t *testing.T) {
	status := http.StatusServiceUnavailable
	rc := newReceiver(t, func(_ int, w http.ResponseWriter) { w.WriteHeader(status) })
	wh, err := events.NewWebhook(events.WebhookConfig{URL: rc.URL, Secret: secret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"e1","type":"guest.created"}`)
	retry, wait, err := wh.Attempt(context.Background(), "e1", body)
	if err == nil || !retry || wait != -1 {
		t.Fatalf("503: retry %v, wait %v, err %v", retry, wait, err)
	}
	status = http.StatusNoContent
	if _, _, err := wh.Attempt(context.Background(), "e1", body); err != nil {
		t.Fatal(err)
	}
	d := rc.deliveries()
	if len(d) != 2 || string(d[1].body) != string(body) || d[1].header.Get(webhook.HeaderID) != "e1" {
		t.Fatalf("deliveries %+v", d)
	}
	if err := webhook.Key(secret).Verify(d[1].header, d[1].body, time.Now()); err != nil {
		t.Fatalf("signature: %v", err)
	}
	other, _ := events.NewWebhook(events.WebhookConfig{URL: rc.URL + "/other", Secret: secret}, nil)
	same, _ := events.NewWebhook(events.WebhookConfig{URL: rc.URL, Secret: []byte("another secret")}, nil)
	if tg := wh.Target(); len(tg) != 64 || tg == other.Target() || tg != same.Target() || strings.Contains(tg, "127.0.0.1") {
		t.Fatalf("targets %q, %q, %q", tg, other.Target(), same.Target())
	}
}

package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/webhook"
)

type spooled struct {
	id, typ string
	body    []byte
}

// In spool mode the webhook posts nothing: queued events go to Spool
// (retried while it fails), noisy ones coalesced as usual.
func TestWebhookSpool(t *testing.T) {
	rc := newReceiver(t, func(int, http.ResponseWriter) {})
	var mu sync.Mutex
	var got []spooled
	fails := 1
	wh, err := events.NewWebhook(events.WebhookConfig{
		URL: rc.URL, Secret: secret, Backoff: func(int) time.Duration { return time.Millisecond },
		Spool: func(_ context.Context, id, typ string, body []byte) error {
			mu.Lock()
			defer mu.Unlock()
			if fails > 0 {
				fails--
				return errors.New("database down")
			}
			got = append(got, spooled{id, typ, body})
			return nil
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wh.Start()
	wh.Enqueue(events.Event{ID: "reuse", Type: events.RefreshReuseDetected})
	wh.Enqueue(events.Event{ID: "t1", Type: events.SignInThrottled, Data: map[string]any{"client_ip": "192.0.2.1"}})
	wh.Enqueue(events.Event{ID: "t2", Type: events.SignInThrottled, Data: map[string]any{"client_ip": "192.0.2.1"}})
	if err := wh.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(rc.deliveries()); n != 0 {
		t.Fatalf("%d POSTs in spool mode", n)
	}
	var ids []string
	for _, s := range got {
		ids = append(ids, s.id)
		var ev events.Event
		if err := json.Unmarshal(s.body, &ev); err != nil || ev.ID != s.id || ev.Type != s.typ {
			t.Fatalf("spooled body %s for %s/%s: %v", s.body, s.id, s.typ, err)
		}
	}
	// reuse (after one failed try), the first throttled event at once, and
	// the second in a summary with a new id at Stop.
	if len(got) != 3 || got[0].id != "reuse" || got[1].id != "t1" || got[2].id == "t2" || got[2].typ != events.SignInThrottled {
		t.Fatalf("spooled %v; want reuse, t1, then a summary", ids)
	}
}

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
	retry, wait, err := wh.Attempt(context.Background(), "e1", events.GuestCreated, body)
	if err == nil || !retry || wait != -1 {
		t.Fatalf("503: retry %v, wait %v, err %v", retry, wait, err)
	}
	status = http.StatusNoContent
	if _, _, err := wh.Attempt(context.Background(), "e1", events.GuestCreated, body); err != nil {
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

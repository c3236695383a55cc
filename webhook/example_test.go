package webhook_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/guestauth/caddy-guestauth/webhook"
)

// receiver is a webhook endpoint as an app would write it: it checks each
// delivery, de-duplicates on its id, and handles the event.
type receiver struct {
	key webhook.Key
	now func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // delivery ids handled, and when
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The raw body, as sent: parsing and re-encoding would change it.
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	now := rc.now()
	if err := rc.key.Verify(r.Header, body, now); err != nil {
		fmt.Println("refused:", err)
		http.Error(w, "not a genuine delivery", http.StatusUnauthorized)
		return
	}
	// Within the tolerance, the id tells retries and replays apart from new
	// events. Ids older than twice the tolerance can be forgotten: Verify
	// refuses a delivery that old.
	id := r.Header.Get(webhook.HeaderID)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for old, at := range rc.seen {
		if now.Sub(at) > 2*webhook.DefaultTolerance {
			delete(rc.seen, old)
		}
	}
	if _, dup := rc.seen[id]; dup {
		fmt.Println("already handled:", id)
		w.WriteHeader(http.StatusNoContent) // a 2xx, so a retry stops
		return
	}
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "bad JSON", http.StatusBadRequest)
		return
	}
	switch ev.Type {
	case webhook.GuestUpgraded:
		fmt.Println("upgraded:", ev.UserID, ev.Data["old_name"], "->", ev.Data["new_name"])
	default: // types this app does not handle, or not yet
	}
	rc.seen[id] = now
	w.WriteHeader(http.StatusNoContent)
}

// A receiver fed a genuine delivery, the same delivery again (a retry), a
// tampered copy, and a replay ten minutes later.
func Example_receiver() {
	// The secret configured in the Caddyfile (webhook <url> <secret>),
	// typically read from the environment.
	key, err := webhook.ParseSecret("whsec_c2VjcmV0LWtleS1vZi1hdC1sZWFzdC0yNC1ieXRlcw==")
	if err != nil {
		panic(err)
	}
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	srv := httptest.NewServer(&receiver{key: key, now: func() time.Time { return now }, seen: map[string]time.Time{}})
	defer srv.Close()

	// What guestauth sends for an upgrade.
	body := []byte(`{"id":"0194276c-1c8e-7d43-a3a3-0d6a0b6e0d8b","type":"guest.upgraded","time":"2025-01-02T03:04:04.5Z",` +
		`"user_id":"0194276b-f2a1-7c44-9a0e-5b1f3c2d4e6f","data":{"old_name":"guest-1a2b","new_name":"alice"}}`)
	header := http.Header{"Content-Type": {"application/json"}}
	key.SetHeaders(header, "0194276c-1c8e-7d43-a3a3-0d6a0b6e0d8b", now, body)

	post := func(body []byte) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
		req.Header = header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
	}
	post(body)
	post(body) // a retry, or a replay within the tolerance
	post(bytes.Replace(body, []byte("alice"), []byte("mallory"), 1))
	now = now.Add(10 * time.Minute)
	post(body)

	// Output:
	// upgraded: 0194276b-f2a1-7c44-9a0e-5b1f3c2d4e6f guest-1a2b -> alice
	// already handled: 0194276c-1c8e-7d43-a3a3-0d6a0b6e0d8b
	// refused: webhook signature missing or wrong: no v1 signature matches
	// refused: webhook timestamp outside the tolerance: a replay, or a clock off: signed 10m0s ago
}

// Verify with the secret as configured, for a receiver that does not keep
// a parsed key.
func ExampleVerify() {
	const secret = "a plain secret" // keyed by its bytes as written
	body := []byte(`{"id":"e1","type":"guest.created","time":"2025-01-02T03:04:05Z"}`)
	at := time.Unix(1735787045, 0)
	header := http.Header{}
	webhook.Key(secret).SetHeaders(header, "e1", at, body)

	fmt.Println(webhook.Verify(secret, header, body, at.Add(time.Minute)))
	fmt.Println(webhook.Verify("another secret", header, body, at))
	// Output:
	// <nil>
	// webhook signature missing or wrong: no v1 signature matches
}

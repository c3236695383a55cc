package events_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
)

// tolerance is how far a delivery's timestamp may be from this receiver's
// clock; older deliveries are refused as replays.
const tolerance = 5 * time.Minute

// endpoint is a webhook receiver as an app would write it, with the
// standard library only, so it carries over to any language.
type endpoint struct {
	secret []byte
	now    func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // delivery ids handled, and when
}

func (ep *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// 1. The raw body, as sent: parsing and re-encoding would change it.
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	// 2. The signature covers the timestamp, a dot and the body.
	ts := r.Header.Get("X-Guest-Auth-Timestamp")
	mac := hmac.New(sha256.New, ep.secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	// 3. Compared in constant time.
	if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-Guest-Auth-Signature"))) {
		fmt.Println("refused: bad signature")
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	// 4. A genuine delivery, but signed long ago: a replay.
	sec, err := strconv.ParseInt(ts, 10, 64)
	now := ep.now()
	if age := now.Sub(time.Unix(sec, 0)); err != nil || age > tolerance || age < -tolerance {
		fmt.Println("refused: stale timestamp")
		http.Error(w, "stale timestamp", http.StatusUnauthorized)
		return
	}
	// 5. Within the tolerance, the id tells retries and replays apart from
	// new events. Ids older than twice the tolerance can be forgotten: a
	// delivery that old is refused at step 4.
	id := r.Header.Get("X-Guest-Auth-Delivery")
	ep.mu.Lock()
	defer ep.mu.Unlock()
	for old, at := range ep.seen {
		if now.Sub(at) > 2*tolerance {
			delete(ep.seen, old)
		}
	}
	if _, dup := ep.seen[id]; dup {
		fmt.Println("already handled:", id)
		w.WriteHeader(http.StatusNoContent) // a 2xx, so a retry stops
		return
	}
	var ev struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "bad JSON", http.StatusBadRequest)
		return
	}
	ep.seen[id] = now
	fmt.Println("accepted:", ev.Type, ev.Data["old_name"], "->", ev.Data["new_name"])
	w.WriteHeader(http.StatusNoContent)
}

// A webhook receiver that checks each delivery's signature and timestamp
// and de-duplicates on its id, fed a real delivery, the same delivery again,
// a tampered copy, and a replay ten minutes later.
func Example_receiver() {
	secret := []byte("the webhook secret")
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ep := &endpoint{secret: secret, now: func() time.Time { return now }, seen: map[string]time.Time{}}

	// Record the delivery to replay it below.
	var header http.Header
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header = r.Header.Clone()
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		ep.ServeHTTP(w, r)
	}))
	defer srv.Close()

	hook, err := events.NewWebhook(events.WebhookConfig{URL: srv.URL, Secret: secret, Now: func() time.Time { return now }}, nil)
	if err != nil {
		panic(err)
	}
	ev, payload, err := hook.Encode(events.Event{ID: "7c9e6679-7425-40de-944b-e07fc1f90ae7", Type: events.GuestUpgraded, UserID: "u1",
		Data: map[string]any{"old_name": "guest-1a2b", "new_name": "alice"}})
	if err != nil {
		panic(err)
	}
	_, _, _ = hook.Attempt(context.Background(), ev.ID, ev.Type, payload) // one delivery

	send := func(h http.Header, b []byte) {
		r := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(b))
		r.Header = h
		ep.ServeHTTP(httptest.NewRecorder(), r)
	}
	send(header, body) // a retry, or a replay within the tolerance
	send(header, bytes.Replace(body, []byte("alice"), []byte("mallory"), 1))
	now = now.Add(10 * time.Minute)
	send(header, body)

	// Output:
	// accepted: guest.upgraded guest-1a2b -> alice
	// already handled: 7c9e6679-7425-40de-944b-e07fc1f90ae7
	// refused: bad signature
	// refused: stale timestamp
}

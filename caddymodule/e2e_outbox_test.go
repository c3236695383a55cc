package caddymodule_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
	"github.com/guestauth/caddy-guestauth/webhook"
)

// outboxReceiver answers 503 until up, then records each verified
// delivery by event id.
type outboxReceiver struct {
	*httptest.Server
	up  atomic.Bool
	mu  sync.Mutex
	got map[string]events.Event
	bad []string
}

func newOutboxReceiver(t *testing.T, secret string) *outboxReceiver {
	h := &outboxReceiver{got: map[string]events.Event{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		var ev events.Event
		if webhook.Verify(secret, r.Header, body, time.Now()) != nil || json.Unmarshal(body, &ev) != nil || r.Header.Get(webhook.HeaderID) != ev.ID {
			h.bad = append(h.bad, string(body))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h.got[ev.ID] = ev
	}))
	t.Cleanup(h.Close)
	return h
}

// A node killed (SIGKILL) before delivering any event loses none: every
// event of every acknowledged write was stored with it in the shared
// outbox, and another node with the same webhook delivers each of them,
// under the id it was stored with.
func TestPostgresOutboxSurvivesNodeKill(t *testing.T) {
	t.Parallel()
	hook := newOutboxReceiver(t, "hook-secret")
	dsn := pgtest.DSN(t)
	opts := fmt.Sprintf("webhook %s/hook hook-secret", hook.URL)
	a := pgNodesOn(t, dsn, 1, opts)[0]

	subs := map[string]bool{}
	var upgraded string
	for i := range 5 {
		g := a.createGuest()
		_, claims := jwtParts(t, g.AccessToken)
		sub, _ := claims["sub"].(string)
		subs[sub] = true
		if i == 0 {
			wantEnvelope(t, a.updateUser(g.AccessToken, map[string]string{"name": "outbox-kate", "password": "kate-password"}), http.StatusOK, "ok")
			upgraded = sub
		}
	}
	// The receiver is down: node A's attempts fail; then A dies.
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-a.done
	a.cmd = nil

	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(), `SELECT id FROM guestauth_outbox`)
	stored, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 6 {
		t.Fatalf("the outbox holds %d events after A died; want 6 (5 created, 1 upgraded)", len(stored))
	}

	hook.up.Store(true)
	b := pgNodesOn(t, dsn, 1, opts)[0]
	_ = b
	deadline := time.Now().Add(2 * time.Minute) // a row A had claimed waits for its lease
	for {
		hook.mu.Lock()
		n, bad := len(hook.got), slices.Clone(hook.bad)
		hook.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("bad deliveries: %q", bad)
		}
		if n >= len(stored) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node B delivered %d of the %d events", n, len(stored))
		}
		time.Sleep(100 * time.Millisecond)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	created := map[string]bool{}
	for _, id := range stored {
		ev, ok := hook.got[id]
		if !ok {
			t.Fatalf("event %s was never delivered", id)
		}
		switch ev.Type {
		case events.GuestCreated:
			created[ev.UserID] = true
		case events.GuestUpgraded:
			if ev.UserID != upgraded || ev.Data["new_name"] != "outbox-kate" {
				t.Fatalf("upgrade event %+v", ev)
			}
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	for sub := range subs {
		if !created[sub] {
			t.Fatalf("no guest.created delivered for acknowledged guest %s", sub)
		}
	}
}

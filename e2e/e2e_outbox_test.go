package e2e

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
	up       atomic.Bool
	attempts atomic.Int64 // requests, answered or not
	mu       sync.Mutex
	got      map[string]events.Event
	bad      []string
}

func newOutboxReceiver(t *testing.T, secret string) *outboxReceiver {
	h := &outboxReceiver{got: map[string]events.Event{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.attempts.Add(1)
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

// waitDelivered waits until hook has verified deliveries of every id, and
// returns them by id.
func (h *outboxReceiver) waitDelivered(t *testing.T, ids []string) map[string]events.Event {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // a record in retry waits for its backoff, one claimed when the process died for its lease
	for {
		h.mu.Lock()
		bad := slices.Clone(h.bad)
		missing := 0
		for _, id := range ids {
			if _, ok := h.got[id]; !ok {
				missing++
			}
		}
		h.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("bad deliveries: %q", bad)
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d events were never delivered", missing, len(ids))
		}
		time.Sleep(100 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	got := make(map[string]events.Event, len(h.got))
	for id, ev := range h.got {
		got[id] = ev
	}
	return got
}

// checkGuestEvents checks that got holds a guest.created for each
// acknowledged guest and the upgrade of upgraded, and nothing else.
func checkGuestEvents(t *testing.T, got map[string]events.Event, ids []string, subs map[string]bool, upgraded, newName string) {
	t.Helper()
	created := map[string]bool{}
	for _, id := range ids {
		ev := got[id]
		switch ev.Type {
		case events.GuestCreated:
			created[ev.UserID] = true
		case events.GuestUpgraded:
			if ev.UserID != upgraded || ev.Data["new_name"] != newName {
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

// guestsAndAnUpgrade creates n guests on s, upgrading the first to name,
// and returns their subjects and the upgraded one's.
func guestsAndAnUpgrade(t *testing.T, s *server, n int, name string) (subs map[string]bool, upgraded string) {
	t.Helper()
	subs = map[string]bool{}
	for i := range n {
		g := s.createGuest()
		_, claims := jwtParts(t, g.AccessToken)
		sub, _ := claims["sub"].(string)
		subs[sub] = true
		if i == 0 {
			wantEnvelope(t, s.updateUser(g.AccessToken, map[string]string{"name": name, "password": name + "-password"}), http.StatusOK, "ok")
			upgraded = sub
		}
	}
	return subs, upgraded
}

// Caddy on a bbolt file, killed (SIGKILL) while its webhook receiver is
// down, loses no event: every event of every acknowledged write was stored
// with it in the file's outbox, and the next start delivers each of them
// once the receiver is back, under the id it was stored with.
func TestBoltOutboxSurvivesKill(t *testing.T) {
	t.Parallel()
	hook := newOutboxReceiver(t, "hook-secret")
	s := newServer(t)
	cfg := s.siteConfig(fmt.Sprintf("webhook %s/hook hook-secret", hook.URL))
	s.Start(cfg)
	subs, upgraded := guestsAndAnUpgrade(t, s, 5, "outbox-lena")
	// The receiver is down: the attempts fail; then Caddy dies.
	eventually(t, "a failed attempt", func() bool { return hook.attempts.Load() > 0 })
	s.kill()

	wh, err := events.NewWebhook(events.WebhookConfig{URL: hook.URL + "/hook", Secret: []byte("hook-secret")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := openStopped(t, s.DB)
	n, err := st.OutboxLen(context.Background(), wh.Target())
	if err != nil {
		t.Fatal(err)
	}
	// Their ids, as stored (a claim's lease ends when the file opens again).
	recs, err := st.OutboxClaim(context.Background(), wh.Target(), time.Now().Add(time.Hour), 0, 100)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 || len(recs) != 6 {
		t.Fatalf("the outbox holds %d events (%d claimed) after the kill; want 6 (5 created, 1 upgraded)", n, len(recs))
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}

	hook.up.Store(true)
	s.Start(cfg)
	checkGuestEvents(t, hook.waitDelivered(t, ids), ids, subs, upgraded, "outbox-lena")
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

	subs, upgraded := guestsAndAnUpgrade(t, a, 5, "outbox-kate")
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
	pgNodesOn(t, dsn, 1, opts) // node B
	checkGuestEvents(t, hook.waitDelivered(t, stored), stored, subs, upgraded, "outbox-kate")
}

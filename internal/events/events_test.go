package events_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/guestauth/caddy-guestauth/internal/events"
)

// recordSink keeps what it is given.
type recordSink struct {
	mu  sync.Mutex
	got []events.Event
}

func (s *recordSink) Enqueue(ev events.Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, ev)
	return true
}

func TestEmitterLogs(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	sink := &recordSink{}
	em := events.NewEmitter(zap.New(core), sink)

	data := map[string]any{
		"old_name":      "guest-1",
		"new_name":      "alice",
		"password":      "hunter2",
		"refresh_token": "rt",
		"ClientSecret":  "cs",
	}
	em.Emit(events.Event{Type: events.GuestUpgraded, UserID: "u1", ClientID: "app", Data: data})
	em.Emit(events.Event{Type: events.RefreshReuseDetected, ClientID: "app", Data: map[string]any{"client_ip": "192.0.2.1"}})
	em.Emit(events.Event{Type: events.SignInThrottled, Data: map[string]any{"client_ip": "192.0.2.1", "retry_after_s": 30}})
	em.Emit(events.Event{Type: events.SessionRevoked, UserID: "u1", Data: map[string]any{"cause": "logout"}})

	entries := logs.AllUntimed()
	if len(entries) != 4 {
		t.Fatalf("%d log entries, want 4", len(entries))
	}
	for i, want := range []struct {
		msg    string
		level  zapcore.Level
		fields map[string]any
		absent []string
	}{
		{events.GuestUpgraded, zapcore.InfoLevel, map[string]any{"user_id": "u1", "client_id": "app", "old_name": "guest-1", "new_name": "alice"}, nil},
		{events.RefreshReuseDetected, zapcore.WarnLevel, map[string]any{"client_id": "app", "client_ip": "192.0.2.1"}, []string{"user_id"}},
		{events.SignInThrottled, zapcore.WarnLevel, map[string]any{"client_ip": "192.0.2.1", "retry_after_s": int64(30)}, []string{"user_id", "client_id"}},
		{events.SessionRevoked, zapcore.InfoLevel, map[string]any{"user_id": "u1", "cause": "logout"}, []string{"client_id"}},
	} {
		e := entries[i]
		if e.Message != want.msg || e.Level != want.level {
			t.Errorf("entry %d: %s %q, want %s %q", i, e.Level, e.Message, want.level, want.msg)
		}
		got := e.ContextMap()
		for k, v := range want.fields {
			if got[k] != v {
				t.Errorf("%s: %s = %v (%T), want %v", e.Message, k, got[k], got[k], v)
			}
		}
		for _, k := range want.absent {
			if _, ok := got[k]; ok {
				t.Errorf("%s: empty %s logged", e.Message, k)
			}
		}
		if _, err := uuid.Parse(got["event_id"].(string)); err != nil {
			t.Errorf("%s: event_id %v", e.Message, got["event_id"])
		}
		for k := range got {
			if l := strings.ToLower(k); strings.Contains(l, "secret") || strings.Contains(l, "password") || strings.Contains(l, "token") {
				t.Errorf("%s: field %q logged", e.Message, k)
			}
		}
	}

	// The sink gets the same filtered event, and the caller's map is untouched.
	if len(sink.got) != 4 {
		t.Fatalf("sink got %d events, want 4", len(sink.got))
	}
	ev := sink.got[0]
	if len(ev.Data) != 2 || ev.Data["old_name"] != "guest-1" || ev.Data["new_name"] != "alice" {
		t.Errorf("sink data %v, want only the names", ev.Data)
	}
	if len(data) != 5 {
		t.Error("Emit changed the caller's map")
	}
	if u, err := uuid.Parse(ev.ID); err != nil || u.Version() != 4 {
		t.Errorf("ID %q is not a UUID v4", ev.ID)
	}
	if ev.ID != entries[0].ContextMap()["event_id"] {
		t.Error("log and sink disagree on the event id")
	}
	if ev.Time.Location() != time.UTC || time.Since(ev.Time) > time.Minute {
		t.Errorf("Time %v, want now in UTC", ev.Time)
	}
}

func TestEmitKeepsGivenIDAndTime(t *testing.T) {
	sink := &recordSink{}
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	events.NewEmitter(nil, sink).Emit(events.Event{ID: "fixed", Type: events.GuestExpired, Time: at})
	if ev := sink.got[0]; ev.ID != "fixed" || !ev.Time.Equal(at) || ev.Time.Location() != time.UTC {
		t.Errorf("got %q %v", ev.ID, ev.Time)
	}
}

func TestNilEmitter(t *testing.T) {
	var em *events.Emitter
	em.Emit(events.Event{Type: events.GuestCreated}) // must not panic
}

func TestEventJSON(t *testing.T) {
	b, err := json.Marshal(events.Event{ID: "x", Type: events.GuestCreated, Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"id":"x","type":"guest.created","time":"2025-01-02T03:04:05Z"}`; string(b) != want {
		t.Errorf("got %s, want %s", b, want)
	}
}

// An event already stored with its write (in the store's outbox) is logged
// like any other, keeping the id and time it was stored under, but not
// handed to the sinks: the outbox delivers it.
func TestEmitterLogSkipsSinks(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	sink := &recordSink{}
	em := events.NewEmitter(zap.New(core), sink)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	got := em.Log(events.Event{ID: "stored-1", Type: events.GuestCreated, Time: at, UserID: "u1", Data: map[string]any{"via": "code", "secret": "x"}})
	if got.ID != "stored-1" || !got.Time.Equal(at) || got.Data["secret"] != nil {
		t.Fatalf("Log returned %+v", got)
	}
	if e := logs.AllUntimed(); len(e) != 1 || e[0].Message != events.GuestCreated || e[0].ContextMap()["event_id"] != "stored-1" {
		t.Fatalf("log entries %+v", e)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if len(sink.got) != 0 {
		t.Fatalf("the sink was given %+v", sink.got)
	}
	var nilEm *events.Emitter
	nilEm.Log(events.Event{Type: events.GuestCreated}) // a nil Emitter does nothing
}

package accounts_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// writeLog is a store whose event-taking writes note, for each event id a
// write stored (it returned nil), which write it was.
type writeLog struct {
	storage.Backend
	mu sync.Mutex
	by map[string]string // event id -> the write that stored it
}

// wrap returns ev noting the ids of its last call, and done, to call with
// the write's error.
func (w *writeLog) wrap(write string, ev storage.Events) (storage.Events, func(error)) {
	if ev == nil {
		return nil, func(error) {}
	}
	var ids []string
	return func(r storage.TxResult) ([]storage.OutboxRecord, error) {
			recs, err := ev(r)
			ids = ids[:0]
			for _, rec := range recs {
				ids = append(ids, rec.ID)
			}
			return recs, err
		}, func(err error) {
			if err != nil {
				return
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			for _, id := range ids {
				w.by[id] = write
			}
		}
}

func (w *writeLog) CreateUser(ctx context.Context, u *model.User, se *model.Session, d *model.Device, ev storage.Events) error {
	ev, done := w.wrap("CreateUser", ev)
	err := w.Backend.CreateUser(ctx, u, se, d, ev)
	done(err)
	return err
}

func (w *writeLog) UpdateUser(ctx context.Context, id string, fn func(u *model.User) error, ev storage.Events) (*model.User, error) {
	ev, done := w.wrap("UpdateUser", ev)
	u, err := w.Backend.UpdateUser(ctx, id, fn, ev)
	done(err)
	return u, err
}

func (w *writeLog) DeleteUser(ctx context.Context, id string, ev storage.Events) error {
	ev, done := w.wrap("DeleteUser", ev)
	err := w.Backend.DeleteUser(ctx, id, ev)
	done(err)
	return err
}

func (w *writeLog) DeleteSession(ctx context.Context, id string, ev storage.Events) error {
	ev, done := w.wrap("DeleteSession", ev)
	err := w.Backend.DeleteSession(ctx, id, ev)
	done(err)
	return err
}

func (w *writeLog) DeleteUserSessions(ctx context.Context, userID, keep string, ev storage.Events) (int, error) {
	ev, done := w.wrap("DeleteUserSessions", ev)
	n, err := w.Backend.DeleteUserSessions(ctx, userID, keep, ev)
	done(err)
	return n, err
}

func (w *writeLog) DeleteUsersIf(ctx context.Context, ids []string, pred func(u *model.User) bool, ev storage.Events) ([]model.User, error) {
	ev, done := w.wrap("DeleteUsersIf", ev)
	del, err := w.Backend.DeleteUsersIf(ctx, ids, pred, ev)
	done(err)
	return del, err
}

// stager encodes events as the Caddy module does.
func stager(evs []events.Event) ([]events.Event, []storage.OutboxRecord, error) {
	var out []events.Event
	var recs []storage.OutboxRecord
	for _, ev := range evs {
		ev = events.Prepare(ev)
		out = append(out, ev)
		body, err := json.Marshal(ev)
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, storage.OutboxRecord{ID: ev.ID, Type: ev.Type, Target: "T", Body: body, CreatedAt: ev.Time})
	}
	return out, recs, nil
}

// With a Stager, each lifecycle event is stored by the write it reports,
// in the store's outbox (its id fixed then, and reported as stored under
// that id); outcomes with no write of their own are reported unstored, for
// the observer's sink to store.
func TestStagedEventsStoredWithTheirWrite(t *testing.T) {
	t.Parallel()
	st := &writeLog{Backend: openStore(t), by: map[string]string{}}
	keys, err := tokens.LoadKeyring(bg, st)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	var o observed
	cfg := defaultConfig()
	cfg.Observer = o.observe
	cfg.Stager = stager
	svc, err := accounts.New(bg, st, keys, cfg, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{svc: svc, clock: c}
	stored := func(step, typ, write string) events.Event {
		t.Helper()
		evs, isStored := o.takeStored()
		if len(evs) != 1 || evs[0].Type != typ || !isStored[0] || evs[0].ID == "" {
			t.Fatalf("%s: observed %+v; want one stored %s", step, evs, typ)
		}
		st.mu.Lock()
		got := st.by[evs[0].ID]
		st.mu.Unlock()
		if got != write {
			t.Fatalf("%s: event %s stored by %q; want %q", step, evs[0].ID, got, write)
		}
		// In the outbox, as the event is delivered: same id, same body.
		recs, err := st.OutboxClaim(bg, "T", time.Now().Add(time.Hour), 0, 100)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(recs, func(r storage.OutboxRecord) bool { return r.ID == evs[0].ID })
		if i < 0 || recs[i].Type != typ {
			t.Fatalf("%s: the event %s is not in the outbox", step, evs[0].ID)
		}
		var body events.Event
		if err := json.Unmarshal(recs[i].Body, &body); err != nil || body.ID != evs[0].ID || body.UserID != evs[0].UserID {
			t.Fatalf("%s: stored body %s, %v", step, recs[i].Body, err)
		}
		return evs[0]
	}

	g, err := svc.CreateGuest(bg, issuer, "app", "198.51.100.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if ev := stored("create", events.GuestCreated, "CreateUser"); ev.UserID != g.User.ID {
		t.Fatalf("guest.created for %q; want %q", ev.UserID, g.User.ID)
	}
	res, err := svc.UpdateProfile(bg, f.authenticate(t, g.Tokens.AccessToken), accounts.ProfileUpdate{Name: ptr("heron"), Password: ptr("long enough pw"), Issuer: issuer})
	if err != nil || !res.Upgraded {
		t.Fatalf("upgrade: %+v, %v", res, err)
	}
	if ev := stored("upgrade", events.GuestUpgraded, "UpdateUser"); ev.Data["new_name"] != "heron" {
		t.Fatalf("upgrade data %v", ev.Data)
	}
	// A second session, ended by a password change.
	in, err := svc.SignIn(bg, accounts.SignInRequest{Issuer: issuer, ClientID: "app", Username: "heron", Password: "long enough pw", ClientIP: "198.51.100.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	o.take()
	if _, err := svc.UpdateProfile(bg, f.authenticate(t, in.Tokens.AccessToken), accounts.ProfileUpdate{Password: ptr("another long pw"), OldPassword: ptr("long enough pw"), Issuer: issuer}); err != nil {
		t.Fatal(err)
	}
	if ev := stored("password change", events.SessionRevoked, "DeleteUserSessions"); ev.Data["sessions"] != 1 {
		t.Fatalf("revoked data %v", ev.Data)
	}
	// A spent refresh token: no write of its own, reported unstored.
	g2, err := svc.CreateGuest(bg, issuer, "app", "198.51.100.0/24")
	if err != nil {
		t.Fatal(err)
	}
	o.take()
	if _, err := svc.Refresh(bg, issuer, "app", g2.Tokens.RefreshToken); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Refresh(bg, issuer, "app", g2.Tokens.RefreshToken); err == nil {
		t.Fatal("reuse accepted")
	}
	if evs, isStored := o.takeStored(); len(evs) != 1 || evs[0].Type != events.RefreshReuseDetected || isStored[0] {
		t.Fatalf("reuse: observed %+v; want one unstored refresh.reuse_detected", evs)
	}
	g3, err := svc.CreateGuest(bg, issuer, "app", "198.51.100.0/24")
	if err != nil {
		t.Fatal(err)
	}
	o.take()
	if err := svc.Logout(bg, f.authenticate(t, g3.Tokens.AccessToken)); err != nil {
		t.Fatal(err)
	}
	stored("logout", events.SessionRevoked, "DeleteSession")
	if _, err := svc.DeleteUser(bg, g2.User.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	stored("delete", events.UserDeleted, "DeleteUser")
	// g3 is orphaned (its one session ended): the sweep expires it.
	rep, err := accounts.Prune(bg, st, c.Now(), accounts.PruneOptions{Observer: o.observe, Stager: stager}, nil)
	if err != nil || rep.Count != 1 {
		t.Fatalf("prune: %+v, %v", rep, err)
	}
	if ev := stored("expire", events.GuestExpired, "DeleteUsersIf"); ev.UserID != g3.User.ID {
		t.Fatalf("expired %q; want %q", ev.UserID, g3.User.ID)
	}
}

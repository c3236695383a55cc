package accounts_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// txStore stands for a backend with an outbox: after each write it runs
// the write's TxEvents, as PostgreSQL does inside the transaction, and
// keeps the records.
type txStore struct {
	storage.Backend
	mu     sync.Mutex
	staged map[string]string // event id -> the write that stored it
}

func (s *txStore) stage(ctx context.Context, write string, r storage.TxResult, err error) {
	te := storage.TxEventsFrom(ctx)
	if err != nil || te == nil {
		return
	}
	recs, berr := te.Build(r)
	if berr != nil || len(recs) == 0 {
		return
	}
	s.mu.Lock()
	for _, rec := range recs {
		s.staged[rec.ID] = write
	}
	s.mu.Unlock()
	te.MarkStored()
}

func (s *txStore) CreateUser(ctx context.Context, u *model.User, se *model.Session, d *model.Device) error {
	err := s.Backend.CreateUser(ctx, u, se, d)
	s.stage(ctx, "CreateUser", storage.TxResult{Created: []model.User{*u}}, err)
	return err
}

func (s *txStore) UpdateUser(ctx context.Context, id string, fn func(u *model.User) error) (*model.User, error) {
	u, err := s.Backend.UpdateUser(ctx, id, fn)
	s.stage(ctx, "UpdateUser", storage.TxResult{}, err)
	return u, err
}

func (s *txStore) DeleteUser(ctx context.Context, id string) error {
	err := s.Backend.DeleteUser(ctx, id)
	s.stage(ctx, "DeleteUser", storage.TxResult{}, err)
	return err
}

func (s *txStore) DeleteSession(ctx context.Context, id string) error {
	err := s.Backend.DeleteSession(ctx, id)
	s.stage(ctx, "DeleteSession", storage.TxResult{Ended: 1}, err)
	return err
}

func (s *txStore) DeleteUserSessions(ctx context.Context, userID, keep string) (int, error) {
	n, err := s.Backend.DeleteUserSessions(ctx, userID, keep)
	s.stage(ctx, "DeleteUserSessions", storage.TxResult{Ended: n}, err)
	return n, err
}

func (s *txStore) DeleteUsersIf(ctx context.Context, ids []string, pred func(u *model.User) bool) ([]model.User, error) {
	del, err := s.Backend.DeleteUsersIf(ctx, ids, pred)
	s.stage(ctx, "DeleteUsersIf", storage.TxResult{Deleted: del}, err)
	return del, err
}

// stager encodes events as the Caddy module does.
func stager(evs []events.Event) ([]events.Event, []storage.OutboxRecord, error) {
	var out []events.Event
	var recs []storage.OutboxRecord
	for _, ev := range evs {
		ev = events.Prepare(ev)
		out = append(out, ev)
		recs = append(recs, storage.OutboxRecord{ID: ev.ID, Type: ev.Type})
	}
	return out, recs, nil
}

// With a Stager, each lifecycle event is stored by the write it reports
// (its id fixed then, and reported as stored under that id); outcomes with
// no write of their own are reported unstored, for the webhook to queue.
func TestStagedEventsStoredWithTheirWrite(t *testing.T) {
	t.Parallel()
	st := &txStore{Backend: openStore(t), staged: map[string]string{}}
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
		defer st.mu.Unlock()
		if got := st.staged[evs[0].ID]; got != write {
			t.Fatalf("%s: event %s stored by %q; want %q", step, evs[0].ID, got, write)
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

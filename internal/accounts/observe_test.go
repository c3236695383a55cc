package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

type observed struct {
	mu     sync.Mutex
	evs    []events.Event
	stored []bool // per event: reported as stored with its write
}

func (o *observed) observe(_ context.Context, ev events.Event, stored bool) {
	o.mu.Lock()
	o.evs = append(o.evs, ev)
	o.stored = append(o.stored, stored)
	o.mu.Unlock()
}

// take returns what was observed since the last call.
func (o *observed) take() []events.Event {
	evs, _ := o.takeStored()
	return evs
}

// takeStored is take, with whether each event was reported stored.
func (o *observed) takeStored() ([]events.Event, []bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	evs, stored := o.evs, o.stored
	o.evs, o.stored = nil, nil
	return evs, stored
}

// wantOne checks that exactly one outcome of typ was reported, with data.
func (o *observed) wantOne(t *testing.T, step, typ, userID string, data map[string]any) events.Event {
	t.Helper()
	evs := o.take()
	if len(evs) != 1 || evs[0].Type != typ || (userID != "" && evs[0].UserID != userID) {
		t.Fatalf("%s: observed %+v, want one %s for %q", step, evs, typ, userID)
	}
	for k, v := range data {
		if fmt.Sprint(evs[0].Data[k]) != fmt.Sprint(v) {
			t.Fatalf("%s: data %v, want %s=%v", step, evs[0].Data, k, v)
		}
	}
	return evs[0]
}

// The Service reports each domain outcome once, through Config.Observer.
func TestObserverReportsOutcomes(t *testing.T) {
	t.Parallel()
	var o observed
	cfg := defaultConfig()
	cfg.Observer = o.observe
	cfg.AccountLimit = accounts.Limit{Burst: 1, Interval: time.Hour}
	f := newFixture(t, cfg)
	ctx := accounts.WithClientIP(bg, "198.51.100.7")

	g, err := f.svc.CreateGuest(ctx, issuer, "app", "198.51.100.0/24")
	if err != nil {
		t.Fatal(err)
	}
	o.wantOne(t, "create", events.GuestCreated, g.User.ID, map[string]any{"via": "code"})
	id := f.authenticate(t, g.Tokens.AccessToken)

	res, err := f.svc.UpdateProfile(ctx, id, accounts.ProfileUpdate{Name: ptr("heron"), Password: ptr("long enough pw"), Issuer: issuer})
	if err != nil || !res.Upgraded {
		t.Fatalf("upgrade: %+v, %v", res, err)
	}
	o.wantOne(t, "upgrade", events.GuestUpgraded, g.User.ID, map[string]any{"old_name": g.User.Name, "new_name": "heron"})
	if _, err := f.svc.UpdateProfile(ctx, f.authenticate(t, g.Tokens.AccessToken), accounts.ProfileUpdate{DisplayName: ptr("Heron")}); err != nil {
		t.Fatal(err)
	}
	if evs := o.take(); len(evs) != 0 {
		t.Fatalf("a display name change reported %+v", evs)
	}

	// A failed sign-in spends the account's one try; the next is throttled.
	if _, err := f.svc.SignIn(ctx, accounts.SignInRequest{Issuer: issuer, ClientID: "app", Username: "heron", Password: "wrong password", ClientIP: "198.51.100.0/24"}); err == nil {
		t.Fatal("wrong password accepted")
	}
	if evs := o.take(); len(evs) != 0 {
		t.Fatalf("a wrong password reported %+v", evs)
	}
	_, err = f.svc.SignIn(ctx, accounts.SignInRequest{Issuer: issuer, ClientID: "app", Username: "heron", Password: "long enough pw", ClientIP: "198.51.100.0/24"})
	if !errors.As(err, new(*accounts.ThrottledError)) {
		t.Fatalf("sign-in over budget: %v", err)
	}
	ev := o.wantOne(t, "throttled", events.SignInThrottled, "", map[string]any{"client_ip": "198.51.100.7"})
	if ev.ClientID != "app" {
		t.Fatalf("throttled: client %q", ev.ClientID)
	}

	// A spent refresh token presented again.
	next, err := f.svc.Refresh(ctx, issuer, "app", g.Tokens.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Refresh(ctx, issuer, "app", g.Tokens.RefreshToken); !errors.Is(err, accounts.ErrRefreshReuse) {
		t.Fatalf("reuse: %v", err)
	}
	o.wantOne(t, "reuse", events.RefreshReuseDetected, "", map[string]any{"client_ip": "198.51.100.7"})
	_ = next

	// Logout, admin revoke, keep and delete.
	g2, err := f.svc.CreateGuest(bg, issuer, "app", "198.51.100.0/24")
	if err != nil {
		t.Fatal(err)
	}
	o.take()
	if err := f.svc.Logout(bg, f.authenticate(t, g2.Tokens.AccessToken)); err != nil {
		t.Fatal(err)
	}
	o.wantOne(t, "logout", events.SessionRevoked, g2.User.ID, map[string]any{"cause": "logout"})
	if n, err := f.svc.RevokeUserSessions(bg, g2.User.ID, "admin"); err != nil || n != 0 {
		t.Fatalf("revoke with no session: %d, %v", n, err)
	}
	if evs := o.take(); len(evs) != 0 {
		t.Fatalf("revoking nothing reported %+v", evs)
	}
	if _, err := f.svc.RevokeUserSessions(bg, "no-such-user", "admin"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if u, err := f.svc.SetKept(bg, g2.User.ID, true, "admin"); err != nil || !u.Kept {
		t.Fatalf("keep: %+v, %v", u, err)
	}
	o.wantOne(t, "keep", accounts.UserKept, g2.User.ID, map[string]any{"kept": true, "cause": "admin"})
	if _, err := f.svc.DeleteUser(bg, g2.User.ID, "admin"); err != nil {
		t.Fatal(err)
	}
	o.wantOne(t, "delete", events.UserDeleted, g2.User.ID, map[string]any{"name": g2.User.Name, "tag": "guest-user", "cause": "admin"})
	if _, err := f.svc.DeleteUser(bg, g2.User.ID, "admin"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("delete again: %v", err)
	}
	if evs := o.take(); len(evs) != 0 {
		t.Fatalf("failed calls reported %+v", evs)
	}
}

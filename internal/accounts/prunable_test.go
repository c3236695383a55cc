package accounts_test

import (
	"context"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// The expiry rule, written once in accounts.Prunable.
func TestPrunableRule(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cutoff := t0.Add(time.Hour)
	guest := func(mod func(u *model.User)) *model.User {
		u := &model.User{ID: "g", Name: "guest_g", Tag: model.TagGuest, CreatedAt: t0}
		if mod != nil {
			mod(u)
		}
		return u
	}
	for _, c := range []struct {
		name   string
		u      *model.User
		cutoff time.Time
		reason string
	}{
		{"idle guest", guest(nil), cutoff, accounts.PruneIdle},
		{"active guest", guest(func(u *model.User) { u.LastActiveAt = cutoff }), cutoff, ""},
		{"kept idle guest", guest(func(u *model.User) { u.Kept = true }), cutoff, ""},
		{"idle normal user", guest(func(u *model.User) { u.Tag = model.TagNormal; u.PasswordHash = "$argon2id$x" }), cutoff, ""},
		{"idle passwordless normal user", guest(func(u *model.User) { u.Tag = model.TagNormal }), cutoff, accounts.PruneIdle},
		{"orphan", guest(func(u *model.User) { u.LastActiveAt = cutoff; u.OrphanedAt = cutoff }), cutoff, accounts.PruneOrphan},
		{"orphan, idle expiry off", guest(func(u *model.User) { u.OrphanedAt = t0 }), time.Time{}, accounts.PruneOrphan},
		{"idle, idle expiry off", guest(nil), time.Time{}, ""},
		{"sessionless device guest", guest(func(u *model.User) { u.LastActiveAt = cutoff; u.OrphanedAt = cutoff; u.DeviceKID = "k" }), cutoff, ""},
		{"kept orphan", guest(func(u *model.User) { u.OrphanedAt = t0; u.Kept = true }), time.Time{}, ""},
		{"idle orphan: idle first", guest(func(u *model.User) { u.OrphanedAt = t0 }), cutoff, accounts.PruneIdle},
	} {
		reason, ok := accounts.Prunable(c.u, c.cutoff)
		if reason != c.reason || ok != (c.reason != "") {
			t.Errorf("%s: Prunable = %q, %v; want %q", c.name, reason, ok, c.reason)
		}
	}
}

// A shutdown's last activity flush runs although the context (Caddy's,
// cancelled when the config is unloaded) is done by then.
func TestActivityLastFlushSurvivesCancelledContext(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultConfig())
	g, err := f.svc.CreateGuest(bg, issuer, "app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	act := accounts.NewActivity(f.store)
	ctx, cancel := context.WithCancel(bg)
	done := make(chan struct{})
	var flushErr error
	go func() {
		defer close(done)
		act.Run(ctx, time.Hour, func(err error) { flushErr = err })
	}()
	at := f.clock.Now().Add(time.Minute)
	act.Touch(g.User.ID, at)
	cancel()
	<-done
	if flushErr != nil {
		t.Fatalf("last flush: %v", flushErr)
	}
	if u, _ := f.store.GetUser(bg, g.User.ID); !u.LastActiveAt.Equal(at) {
		t.Fatalf("activity lost at shutdown: last active %v, want %v", u.LastActiveAt, at)
	}
}

package accounts_test

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

const idpIssuer = "https://idp.example"

func pid(sub, preferred string) accounts.ProviderIdentity {
	return accounts.ProviderIdentity{Provider: "testidp", Issuer: idpIssuer, Subject: sub, PreferredUsername: preferred}
}

func browserGuest(t *testing.T, f *fixture) *accounts.Identity {
	t.Helper()
	login, err := f.svc.CreateBrowserGuest(bg, issuer, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	return &accounts.Identity{User: login.User, Session: login.Session}
}

// wantOldHandleDead checks that a browser's handle from before a
// privilege change holds no session any more.
func wantOldHandleDead(t *testing.T, f *fixture, prev *accounts.Identity) {
	t.Helper()
	if _, _, err := f.svc.BrowserAuthenticate(bg, accounts.BrowserHandle(prev.Session), issuer); err == nil {
		t.Fatal("the handle from before the sign-in still works")
	}
}

func eventTypes(evs []events.Event) string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Type)
	}
	return strings.Join(out, ",")
}

// The outcomes: a guest signing in with an unlinked identity
// becomes a member with the same id; that identity signs the same member
// in again later; a second guest signing in with it is merged into it.
func TestProviderGuestBecomesMemberThenSignsInAndMerges(t *testing.T) {
	t.Parallel()
	var o observed
	cfg := limitsConfig()
	cfg.Observer = o.observe
	f := newFixture(t, cfg)

	g := browserGuest(t, f)
	o.take()
	login, outcome, err := f.svc.ProviderSignIn(bg, g, issuer, pid("alice-sub", "alice"), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if outcome != accounts.ProviderUpgraded || login.User.ID != g.User.ID || login.User.Tag != model.TagNormal ||
		login.User.IsAnonymous() || login.User.Name != "alice" || login.User.Identities != 1 || login.User.Ephemeral() {
		t.Fatalf("outcome %v, user %+v; want the guest upgraded, same id, named alice", outcome, login.User)
	}
	wantOldHandleDead(t, f, g)
	id, _, err := f.svc.BrowserAuthenticate(bg, login.Handle, issuer)
	if err != nil || id.User.ID != g.User.ID || id.User.Tag != model.TagNormal {
		t.Fatalf("the new handle: %+v, %v", id, err)
	}
	evs := o.take()
	if got := eventTypes(evs); got != "session.revoked,identity.linked,guest.upgraded" && got != "identity.linked,guest.upgraded" {
		t.Fatalf("events %s", got)
	}
	// guest.upgraded says how (the convention shared by every upgrade path).
	if up := evs[len(evs)-1]; up.Data["method"] != "provider" || up.Data["new_name"] != "alice" {
		t.Fatalf("guest.upgraded data %v", up.Data)
	}
	links, err := f.svc.ProviderLinks(bg, g.User.ID)
	if err != nil || len(links) != 1 || links[0].Issuer != idpIssuer || links[0].Subject != "alice-sub" || links[0].Provider != "testidp" {
		t.Fatalf("links %+v, %v", links, err)
	}

	// Signed out, then the same identity: the same member.
	if err := f.svc.EndBrowserSession(bg, id); err != nil {
		t.Fatal(err)
	}
	again, outcome, err := f.svc.ProviderSignIn(bg, nil, issuer, pid("alice-sub", "someone-else"), "192.0.2.1")
	if err != nil || outcome != accounts.ProviderSignedIn || again.User.ID != g.User.ID || again.User.Name != "alice" {
		t.Fatalf("sign in again: %v, %+v, %v", outcome, again, err)
	}

	// A second guest with the same identity: merged into the member.
	g2 := browserGuest(t, f)
	o.take()
	merged, outcome, err := f.svc.ProviderSignIn(bg, g2, issuer, pid("alice-sub", ""), "192.0.2.1")
	if err != nil || outcome != accounts.ProviderSignedIn || merged.User.ID != g.User.ID || merged.Session.MergedFrom != g2.User.ID {
		t.Fatalf("second guest: %v, %+v, %v", outcome, merged, err)
	}
	o.wantOne(t, "merge", events.GuestMerged, g.User.ID, map[string]any{"guest_id": g2.User.ID, "user_id": g.User.ID})
	wantOldHandleDead(t, f, g2)
	if g2now, err := f.store.GetUser(bg, g2.User.ID); err != nil || g2now.Tag != model.TagGuest || g2now.Identities != 0 {
		t.Fatalf("the merged guest: %+v, %v (left a guest, to expire)", g2now, err)
	}
}

// Never by email: an identity is its issuer and subject. The same subject
// at another issuer is another identity.
func TestProviderIdentityIsIssuerAndSubject(t *testing.T) {
	t.Parallel()
	f := newFixture(t, limitsConfig())
	a, _, err := f.svc.ProviderSignIn(bg, nil, issuer, pid("sub", "alice"), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	other := pid("sub", "alice")
	other.Issuer = "https://other-idp.example"
	b, outcome, err := f.svc.ProviderSignIn(bg, nil, issuer, other, "192.0.2.1")
	if err != nil || outcome != accounts.ProviderCreated || b.User.ID == a.User.ID {
		t.Fatalf("same subject, other issuer: %v, %+v, %v; want a new member", outcome, b, err)
	}
	// alice was taken: a generated name, valid and changeable.
	if b.User.Name == "alice" || !strings.HasPrefix(b.User.Name, "user-") || accounts.ValidateName(b.User.Name) != nil {
		t.Fatalf("second member named %q", b.User.Name)
	}
}

// No session and an unlinked identity: a new member, not a guest, that
// does not expire; an unusable preferred name gives a generated one.
func TestProviderNewMember(t *testing.T) {
	t.Parallel()
	var o observed
	cfg := limitsConfig()
	cfg.Observer = o.observe
	f := newFixture(t, cfg)
	for _, preferred := range []string{"", "guest_mallory", "x", "has space"} {
		login, outcome, err := f.svc.ProviderSignIn(bg, nil, issuer, pid("s-"+preferred, preferred), "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		u := login.User
		if outcome != accounts.ProviderCreated || u.Tag != model.TagNormal || u.Ephemeral() || !strings.HasPrefix(u.Name, "user-") {
			t.Fatalf("preferred %q: %v, %+v", preferred, outcome, u)
		}
		if got := eventTypes(o.take()); got != "guest.created,identity.linked,guest.upgraded" {
			t.Fatalf("events %s", got)
		}
	}
}

// A signed-in member links and unlinks providers; the last way in stays.
func TestProviderLinkAndUnlink(t *testing.T) {
	t.Parallel()
	var o observed
	cfg := limitsConfig()
	cfg.Observer = o.observe
	f := newFixture(t, cfg)

	// A member created by a provider has only that way in.
	login, _, err := f.svc.ProviderSignIn(bg, nil, issuer, pid("one", "bob"), "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	id := &accounts.Identity{User: login.User, Session: login.Session}
	var refusal *accounts.Error
	if err := f.svc.UnlinkProvider(bg, id, idpIssuer, "one"); !errors.As(err, &refusal) || refusal.Code != accounts.CodeLastWayIn {
		t.Fatalf("unlinking the last way in: %v", err)
	}
	// Link a second one, then the first can go.
	linked, err := f.svc.LinkProvider(bg, id, issuer, pid("two", ""))
	if err != nil || linked.User.Identities != 2 {
		t.Fatalf("link: %+v, %v", linked, err)
	}
	wantOldHandleDead(t, f, id)
	id = &accounts.Identity{User: linked.User, Session: linked.Session}
	o.take()
	if err := f.svc.UnlinkProvider(bg, id, idpIssuer, "one"); err != nil {
		t.Fatal(err)
	}
	o.wantOne(t, "unlink", events.IdentityUnlinked, id.User.ID, map[string]any{"provider": "testidp", "issuer": idpIssuer})
	if err := f.svc.UnlinkProvider(bg, id, idpIssuer, "one"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("unlinking twice: %v", err)
	}
	// The unlinked identity no longer signs bob in: it makes a new member.
	other, outcome, err := f.svc.ProviderSignIn(bg, nil, issuer, pid("one", ""), "192.0.2.1")
	if err != nil || outcome != accounts.ProviderCreated || other.User.ID == id.User.ID {
		t.Fatalf("the unlinked identity: %v %+v %v", outcome, other, err)
	}
	// Linking an identity linked to another account is refused: accounts
	// are never merged from the account page.
	if _, err := f.svc.LinkProvider(bg, id, issuer, pid("one", "")); !errors.As(err, &refusal) || refusal.Code != accounts.CodeIdentityTaken {
		t.Fatalf("linking another account's identity: %v", err)
	}
	// A member with a password may unlink its only provider.
	m := f.member(t, "carol", "correct horse battery")
	if _, err := f.svc.LinkProvider(bg, m, issuer, pid("carol-sub", "")); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.UnlinkProvider(bg, m, idpIssuer, "carol-sub"); err != nil {
		t.Fatalf("unlinking with a password left: %v", err)
	}
}

// Concurrent first sign-ins of one identity from two browsers without a
// session end in one account: one creates it, the other signs in to it.
func TestProviderConcurrentFirstSignIn(t *testing.T) {
	t.Parallel()
	f := newFixture(t, limitsConfig())
	var wg sync.WaitGroup
	ids := make([]string, 6)
	errs := make([]error, 6)
	for i := range ids {
		wg.Go(func() {
			login, _, err := f.svc.ProviderSignIn(bg, nil, issuer, pid("race", "racer"), "192.0.2.1")
			errs[i] = err
			if err == nil {
				ids[i] = login.User.ID
			}
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("sign-in %d: %q, %v; want all %q", i, ids[i], errs[i], ids[0])
		}
	}
	if n, _, err := f.store.ListUsers(bg, "", model.TagNormal, 100); err != nil || len(n) != 1 {
		t.Fatalf("members: %d, %v; want 1", len(n), err)
	}
}

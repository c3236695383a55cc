package accounts_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

const issuer = "https://app.example.com"

// clock is a settable time source shared by the service and the test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	svc   *accounts.Service
	store *countingStore
	clock *clock
}

func newFixture(t *testing.T, cfg accounts.Config) *fixture {
	t.Helper()
	return newFixtureOn(t, openStore(t), cfg)
}

// newFixtureOn is newFixture on a store the test opened.
func newFixtureOn(t *testing.T, st *countingStore, cfg accounts.Config) *fixture {
	t.Helper()
	keys, err := tokens.LoadKeyring(bg, st)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	svc, err := accounts.New(bg, st, keys, cfg, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{svc: svc, store: st, clock: c}
}

func defaultConfig() accounts.Config {
	return accounts.Config{
		Alg: jwa.RS256, AccessTTL: time.Hour, SessionIdle: 24 * time.Hour,
		SessionLifetime: 72 * time.Hour, Skew: 30 * time.Second, CacheSize: 100,
		Audiences: []string{"app", "my-app", "other-app"},
	}
}

func wantSessionEnded(t *testing.T, id *accounts.Identity, err error) {
	t.Helper()
	var inv *tokens.InvalidError
	if !errors.As(err, &inv) || inv.Reason != accounts.ReasonSessionEnded {
		t.Fatalf("Authenticate = %+v, %v; want reason %q", id, err, accounts.ReasonSessionEnded)
	}
	if id != nil {
		t.Fatalf("identity returned with an error: %+v", id)
	}
}

func TestCreateGuestShape(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultConfig())
	start := f.clock.Now()
	iss, err := f.svc.CreateGuest(bg, issuer, "my-app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	u := iss.User
	if _, err := uuid.Parse(u.ID); err != nil {
		t.Fatalf("user id %q is not a UUID: %v", u.ID, err)
	}
	suffix, ok := strings.CutPrefix(u.Name, "guest_")
	if !ok {
		t.Fatalf("name %q does not start with guest_", u.Name)
	}
	if parsed, err := uuid.Parse(suffix); err != nil || parsed.String() != suffix {
		t.Fatalf("name %q is not guest_<uuid>: %v", u.Name, err)
	}
	if u.Tag != "guest-user" || !u.IsAnonymous() || u.PasswordHash != "" || u.DeviceKID != "" {
		t.Fatalf("guest user = %+v", u)
	}
	if !u.CreatedAt.Equal(start) {
		t.Fatalf("CreatedAt = %v, want the injected clock's %v", u.CreatedAt, start)
	}

	tr := iss.Tokens
	if tr.TokenType != "Bearer" || tr.Scope != "openid" || tr.ExpiresIn != 3600 ||
		tr.AccessToken == "" || tr.IDToken == "" || tr.RefreshToken == "" || tr.AccessToken == tr.IDToken {
		t.Fatalf("token response = %+v", tr)
	}

	// Persisted, with its session.
	stored, err := f.store.GetUser(bg, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Name != u.Name || stored.Tag != "guest-user" || stored.PasswordHash != "" {
		t.Fatalf("stored user = %+v", stored)
	}
	if byName, err := f.store.GetUserByName(bg, strings.ToUpper(u.Name)); err != nil || byName.ID != u.ID {
		t.Fatalf("GetUserByName = %+v, %v", byName, err)
	}
	sess, err := f.store.GetSession(bg, iss.Session.ID)
	if err != nil {
		t.Fatal(err)
	}
	if sess.UserID != u.ID || sess.ClientID != "my-app" || !sess.AuthTime.Equal(start) ||
		!sess.ExpiresAt.Equal(start.Add(72*time.Hour)) || len(sess.RefreshKey) == 0 {
		t.Fatalf("stored session = %+v", sess)
	}
	if !strings.HasPrefix(tr.RefreshToken, sess.ID+".") {
		t.Fatalf("refresh token %q is not bound to session %s", tr.RefreshToken, sess.ID)
	}

	// Every guest is a different user.
	iss2, err := f.svc.CreateGuest(bg, issuer, "my-app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if iss2.User.ID == u.ID || iss2.User.Name == u.Name || iss2.Session.ID == iss.Session.ID {
		t.Fatalf("two guests share an id, name or session: %+v %+v", u, iss2.User)
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultConfig())
	iss, err := f.svc.CreateGuest(bg, issuer, "my-app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	id, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer)
	if err != nil {
		t.Fatal(err)
	}
	if id.User.ID != iss.User.ID || id.User.Name != iss.User.Name || id.User.Tag != "guest-user" ||
		id.Session.ID != iss.Session.ID || id.Claims.Subject != iss.User.ID || id.Claims.ClientID != "my-app" {
		t.Fatalf("identity = user %+v session %+v claims %+v", id.User, id.Session, id.Claims)
	}

	// The store, not the token, is the truth: a change shows at once.
	if _, err := f.store.UpdateUser(bg, iss.User.ID, func(u *model.User) error { u.Tag = model.TagNormal; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	id, err = f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer)
	if err != nil || id.User.Tag != model.TagNormal || id.User.IsAnonymous() {
		t.Fatalf("after upgrade in the store: %+v, %v", id, err)
	}

	for _, tok := range []string{iss.Tokens.IDToken, iss.Tokens.RefreshToken, "garbage"} {
		if _, err := f.svc.Authenticate(bg, tok, issuer); err == nil {
			t.Fatalf("Authenticate accepted %q", tok)
		}
	}
	var inv *tokens.InvalidError
	if _, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, "https://other.example.com"); !errors.As(err, &inv) || inv.Reason != tokens.ReasonIssuer {
		t.Fatalf("other issuer: %v", err)
	}
	f.clock.Advance(time.Hour)
	if _, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer); !errors.As(err, &inv) || inv.Reason != tokens.ReasonExpired {
		t.Fatalf("expired token: %v", err)
	}
}

func TestAuthenticateAfterUserDeleted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultConfig())
	iss, err := f.svc.CreateGuest(bg, issuer, "my-app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	// Verified once, so the token is in the verifier's cache.
	if _, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer); err != nil {
		t.Fatal(err)
	}
	if err := f.store.DeleteUser(bg, iss.User.ID, nil); err != nil {
		t.Fatal(err)
	}
	id, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer)
	wantSessionEnded(t, id, err)
}

func TestAuthenticateAfterSessionDeleted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultConfig())
	iss, err := f.svc.CreateGuest(bg, issuer, "my-app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer); err != nil {
		t.Fatal(err)
	}
	if err := f.store.DeleteSession(bg, iss.Session.ID, nil); err != nil {
		t.Fatal(err)
	}
	id, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer)
	wantSessionEnded(t, id, err)
	// The user itself is still there.
	if _, err := f.store.GetUser(bg, iss.User.ID); err != nil {
		t.Fatal(err)
	}
}

func TestAuthenticateAfterSessionExpired(t *testing.T) {
	t.Parallel()
	// A session shorter than its access token: the token is still valid
	// when the session ends, so only the session check can refuse it.
	cfg := defaultConfig()
	cfg.SessionLifetime = 30 * time.Minute
	f := newFixture(t, cfg)
	iss, err := f.svc.CreateGuest(bg, issuer, "my-app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(29 * time.Minute)
	if _, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer); err != nil {
		t.Fatalf("before the session ends: %v", err)
	}
	f.clock.Advance(time.Minute)
	id, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer)
	wantSessionEnded(t, id, err)
}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	keys, err := tokens.LoadKeyring(bg, st)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.AccessTTL = 0
	if _, err := accounts.New(bg, st, keys, cfg, nil); err == nil {
		t.Fatal("a zero access token lifetime was accepted")
	}
	cfg = defaultConfig()
	cfg.Alg = "HS256"
	if _, err := accounts.New(bg, st, keys, cfg, nil); err == nil {
		t.Fatal("HS256 was accepted as a signing algorithm")
	}
}

// Guests' user and session ids are UUIDv7, so consecutive guests sort in
// creation order and their records append to the store's B-trees.
func TestGuestIDsTimeOrdered(t *testing.T) {
	f := newFixture(t, defaultConfig())
	var prevUser, prevSess string
	for i := range 5 {
		iss, err := f.svc.CreateGuest(bg, issuer, "my-app", "192.0.2.1")
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{iss.User.ID, iss.Session.ID} {
			if u, err := uuid.Parse(id); err != nil || u.Version() != 7 {
				t.Fatalf("id %q is not a UUIDv7 (%v)", id, err)
			}
		}
		if i > 0 && (iss.User.ID <= prevUser || iss.Session.ID <= prevSess) {
			t.Fatalf("ids not increasing: %s after %s, %s after %s", iss.User.ID, prevUser, iss.Session.ID, prevSess)
		}
		prevUser, prevSess = iss.User.ID, iss.Session.ID
	}
}

package accounts_test

import (
	"testing"
	"time"
)

// A token newer than the session in this process's identity cache (minted
// by another process sharing the store, whose change this cache has not
// heard of yet) is authenticated against the store, not the cache.
func TestAuthenticateReadsThroughForANewerToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, defaultConfig())
	iss, err := f.svc.CreateGuest(bg, issuer, "my-app", "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer); err != nil {
		t.Fatal(err)
	}
	cache := f.store.IdentityCache()
	staleUser, staleSession, ok := cache.Get(iss.User.ID, iss.Session.ID)
	if !ok {
		t.Fatal("the identity was not cached")
	}
	f.clock.Advance(2 * time.Second)
	next, err := f.svc.Refresh(bg, issuer, "my-app", iss.Tokens.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	// As if the refresh had happened on another node: this cache still
	// holds the pair from before it.
	cache.Put(cache.Snapshot(), staleUser, staleSession)
	if _, s, ok := cache.Get(iss.User.ID, iss.Session.ID); !ok || s != staleSession {
		t.Fatal("could not plant the stale pair")
	}
	id, err := f.svc.Authenticate(bg, next.Tokens.AccessToken, issuer)
	if err != nil {
		t.Fatal(err)
	}
	if id.Session == staleSession || !id.Session.LastUsedAt.Equal(next.Session.LastUsedAt) || id.Session.Generation != next.Session.Generation {
		t.Fatalf("authenticated against the stale cached session: %+v", id.Session)
	}
	// The token from before the refresh is not newer than anything: it is
	// served from the cache as usual.
	_, s1, _ := cache.Get(iss.User.ID, iss.Session.ID)
	if id, err := f.svc.Authenticate(bg, iss.Tokens.AccessToken, issuer); err != nil || id.Session != s1 {
		t.Fatalf("the older token did not use the cache: %v", err)
	}
}

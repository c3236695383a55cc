package tokens_test

import (
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/tokens"
)

// A full cache evicts the token least recently used, so the tokens of
// active users stay while a stream of new ones passes through.
func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	cache := tokens.NewCache(2)
	a, b := &tokens.AccessClaims{Subject: "a"}, &tokens.AccessClaims{Subject: "b"}
	cache.Put("a", a)
	cache.Put("b", b)
	if _, ok := cache.Get("a"); !ok { // a is now the most recently used
		t.Fatal("a is missing")
	}
	cache.Put("c", &tokens.AccessClaims{Subject: "c"})
	if got, ok := cache.Get("a"); !ok || got != a {
		t.Fatal("the recently used token was evicted")
	}
	if _, ok := cache.Get("b"); ok {
		t.Fatal("the least recently used token was kept")
	}
	if cache.Len() != 2 {
		t.Fatalf("len %d, want 2", cache.Len())
	}
}

// The per-request path: a verified-token cache hit allocates nothing.
func TestVerifyCacheHitAllocates0(t *testing.T) {
	k := newKeyring(t, jwa.EdDSA)
	clock := func() time.Time { return now0.Add(time.Minute) }
	v := &tokens.Verifier{Keys: k, Now: clock, Cache: tokens.NewCache(16), Audiences: []string{"app"}}
	raw := mint(t, k, grant(jwa.EdDSA), subject).AccessToken
	if _, err := v.Verify(raw, issuer); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := v.Verify(raw, issuer); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("a cache hit allocates %v times", n)
	}
}

package tokens_test

import (
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/guestauth/caddy-guestauth/internal/metrics"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
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
	}); n > 0 {
		t.Fatalf("a cache hit allocates %v times, want none", n)
	}
}

// Every lookup counts as a hit or a miss in
// caddy_guest_auth_token_cache_{hits,misses}_total. Not parallel: the
// counters are process-wide.
func TestCacheCountsHitsAndMisses(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := metrics.Register(reg); err != nil {
		t.Fatal(err)
	}
	count := func(name string) float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == name {
				return f.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatalf("%s not exported", name)
		return 0
	}
	hits0, misses0 := count("caddy_guest_auth_token_cache_hits_total"), count("caddy_guest_auth_token_cache_misses_total")
	k := newKeyring(t, jwa.EdDSA)
	v := &tokens.Verifier{Keys: k, Now: func() time.Time { return now0.Add(time.Minute) }, Cache: tokens.NewCache(16), Audiences: []string{"app"}}
	raw := mint(t, k, grant(jwa.EdDSA), subject).AccessToken
	for range 3 { // one miss, then two hits
		if _, err := v.Verify(raw, issuer); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.Verify("not.a.token", issuer); err == nil { // a miss, refused
		t.Fatal("garbage accepted")
	}
	if got := count("caddy_guest_auth_token_cache_hits_total") - hits0; got != 2 {
		t.Errorf("hits +%v, want +2", got)
	}
	if got := count("caddy_guest_auth_token_cache_misses_total") - misses0; got != 2 {
		t.Errorf("misses +%v, want +2", got)
	}
}

// Tokens that differ in any byte are different cache entries, though the
// cache keys them by hash.
func TestCacheKeysWholeToken(t *testing.T) {
	t.Parallel()
	cache := tokens.NewCache(4)
	cache.Put("a.b.c", &tokens.AccessClaims{Subject: "x"})
	for _, other := range []string{"a.b.d", "a.b.c.", "a.b", ""} {
		if _, ok := cache.Get(other); ok {
			t.Fatalf("%q found under a.b.c's entry", other)
		}
	}
	if c, ok := cache.Get("a.b.c"); !ok || c.Subject != "x" {
		t.Fatal("entry lost")
	}
}

// A cache miss allocates little: the decoded token (one buffer), the
// header and payload as read, the claims the cache keeps with their
// strings (one buffer) and the LRU's entry. An upper bound, not a count
// (8 on Go 1.26 with EdDSA): it fails if reading the JSON starts to cost an
// allocation per claim. Under the race detector, whose sync.Pool drops
// objects at random, the JSON decoder is sometimes allocated too (14 to 16
// measured).
func TestVerifyCacheMissAllocations(t *testing.T) {
	k := newKeyring(t, jwa.EdDSA)
	v := &tokens.Verifier{Keys: k, Now: func() time.Time { return now0.Add(time.Minute) }, Cache: tokens.NewCache(1), Audiences: []string{"app"}}
	raw := [2]string{mint(t, k, grant(jwa.EdDSA), subject).AccessToken, mint(t, k, grant(jwa.EdDSA), subject).AccessToken}
	maxAllocs := 10
	if raceEnabled {
		maxAllocs = 24
	}
	i := 0
	if n := testing.AllocsPerRun(100, func() {
		i++
		if _, err := v.Verify(raw[i&1], issuer); err != nil { // a one-entry cache fed two tokens: always a miss
			t.Fatal(err)
		}
	}); n > float64(maxAllocs) {
		t.Fatalf("a cache miss allocates %v times, want at most %d", n, maxAllocs)
	}
}

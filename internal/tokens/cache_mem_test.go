package tokens_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// cacheBudget is the memory DefaultCacheSize is sized for.
const cacheBudget = 64 << 20

// TestCacheBytesPerEntry measures what one cached token costs (the claims
// Verify builds, the key, the LRU's bookkeeping) and holds
// DefaultCacheSize to its memory budget.
func TestCacheBytesPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("mints thousands of tokens")
	}
	const n = 5000
	k := newKeyring(t, jwa.EdDSA)
	raws := make([]string, n)
	for i := range raws {
		sub := subject
		sub.UserID = fmt.Sprintf("0199b2c4-7e1a-7c3d-9f00-%012d", i) // a UUIDv7-sized id
		sub.SessionID = fmt.Sprintf("0199b2c4-7e1a-7c3d-9f01-%012d", i)
		sub.Name = fmt.Sprintf("guest_%012d", i)
		raws[i] = mint(t, k, grant(jwa.EdDSA), sub).AccessToken
	}
	v := &tokens.Verifier{Keys: k, Now: func() time.Time { return now0.Add(time.Minute) }, Audiences: []string{"app"}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v.Cache = tokens.NewCache(n)
	for _, raw := range raws {
		if _, err := v.Verify(raw, issuer); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if v.Cache.Len() != n {
		t.Fatalf("len %d", v.Cache.Len())
	}
	// Signed: a collection between the two readings can leave the heap
	// smaller than before, which unsigned arithmetic would turn into
	// exabytes (and a pass of the budget check into a failure, or the
	// reverse).
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if grown <= 0 {
		t.Fatalf("the heap did not grow (%d bytes) while %d tokens were cached: the measurement is void", grown, n)
	}
	per := float64(grown) / n
	t.Logf("%.0f bytes per cached token; %d MiB budget holds %.0f", per, cacheBudget>>20, cacheBudget/per)
	if per*tokens.DefaultCacheSize > cacheBudget {
		t.Errorf("DefaultCacheSize %d × %.0f bytes exceeds the %d MiB budget", tokens.DefaultCacheSize, per, cacheBudget>>20)
	}
	runtime.KeepAlive(raws)
	runtime.KeepAlive(v)
}

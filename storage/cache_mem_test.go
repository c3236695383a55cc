package storage

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// identityCacheBudget is the memory DefaultIdentityCacheSize is sized for.
const identityCacheBudget = 128 << 20

// TestIdentityCacheBytesPerEntry measures what one cached identity costs (a
// guest's user and session as Identity decodes them, and the LRUs'
// bookkeeping) and holds DefaultIdentityCacheSize to its memory budget.
func TestIdentityCacheBytesPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("decodes thousands of records")
	}
	const n = 5000
	type rec struct{ u, s []byte }
	recs := make([]rec, n)
	for i := range recs {
		u, s := fullUser, fullSession
		// A guest as the store holds it: UUIDv7-sized ids, no password,
		// display name, device or merge.
		u.ID = fmt.Sprintf("0199b2c4-7e1a-7c3d-9f00-%012d", i)
		u.Name = fmt.Sprintf("guest_%012d", i)
		u.DisplayName, u.PasswordHash, u.DeviceKID, u.Kept = "", "", "", false
		s.ID, s.UserID, s.MergedFrom = fmt.Sprintf("0199b2c4-7e1a-7c3d-9f01-%012d", i), u.ID, ""
		recs[i].u, _ = json.Marshal(&u)
		recs[i].s, _ = json.Marshal(&s)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := NewIdentityCache(n)
	for _, r := range recs {
		u, s := new(model.User), new(model.Session)
		if DecodeRecord(r.u, u) != nil || DecodeRecord(r.s, s) != nil {
			t.Fatal("decode")
		}
		c.Put(c.Snapshot(), u, s)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if c.Len() != n {
		t.Fatalf("len %d", c.Len())
	}
	// Signed: a collection between the two readings can leave the heap
	// smaller than before, which unsigned arithmetic would turn into
	// exabytes (and a pass of the budget check into a failure, or the
	// reverse).
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if grown <= 0 {
		t.Fatalf("the heap did not grow (%d bytes) while %d identities were cached: the measurement is void", grown, n)
	}
	per := float64(grown) / n
	t.Logf("%.0f bytes per cached identity; %d MiB budget holds %.0f", per, identityCacheBudget>>20, identityCacheBudget/per)
	if per*DefaultIdentityCacheSize > identityCacheBudget {
		t.Errorf("DefaultIdentityCacheSize %d × %.0f bytes exceeds the %d MiB budget", DefaultIdentityCacheSize, per, identityCacheBudget>>20)
	}
	runtime.KeepAlive(recs)
	runtime.KeepAlive(c)
}

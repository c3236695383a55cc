package bolt_test

import (
	"testing"
	"time"
)

// Entries whose bucket refilled at least a minute ago are deleted (with
// their index entries) as later tries come in; one full again only just
// now is spared, so a key in steady use is not deleted and written again
// at each try. (The conformance suite checks the answers.)
func TestLimitPurge(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	now := time.Unix(1_800_000_000, 0)
	for i := range 10 {
		if _, err := b.LimitTake(bg, "guest_global", string(rune('a'+i)), 2, time.Second, now); err != nil {
			t.Fatal(err)
		}
	}
	if e, i := b.CountLimits(); e != 10 || i != 10 {
		t.Fatalf("%d entries, %d index entries; want 10 each", e, i)
	}
	// Full again since now+1s; purged only a minute after that.
	if _, err := b.LimitTake(bg, "guest_global", "z", 2, time.Second, now.Add(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	if e, _ := b.CountLimits(); e != 11 {
		t.Fatalf("%d entries; want 11 (none refilled a minute ago yet)", e)
	}
	if _, err := b.LimitTake(bg, "guest_global", "y", 2, time.Second, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if e, i := b.CountLimits(); e != 1 || i != 1 {
		t.Fatalf("%d entries, %d index entries; want 1 (the expired ones deleted)", e, i)
	}
}

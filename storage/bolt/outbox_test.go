package bolt_test

import (
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// A record claimed by a process that died (no Close) is due again at the
// next open: no other process can hold a lease on the file, so its lease
// ends there, instead of making the event wait for it.
func TestOutboxLeasesEndAtOpen(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	rec := storage.OutboxRecord{ID: "e1", Type: "guest.created", Target: "T", Body: []byte(`{}`), CreatedAt: t0}
	if err := b.OutboxPut(bg, []storage.OutboxRecord{rec}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if got, err := b.OutboxClaim(bg, "T", now, time.Hour, 10); err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %v", got, err)
	}
	if got, _ := b.OutboxClaim(bg, "T", now.Add(time.Minute), time.Hour, 10); len(got) != 0 {
		t.Fatal("a leased record was claimed again")
	}
	b.Close()
	b2, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	got, err := b2.OutboxClaim(bg, "T", now.Add(time.Minute), time.Hour, 10)
	if err != nil || len(got) != 1 || got[0].ID != "e1" || got[0].Attempts != 2 {
		t.Fatalf("after reopening: %+v, %v; want e1, second attempt", got, err)
	}
}

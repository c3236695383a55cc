package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// A file written before the idle-hour histogram existed gets it built at
// open, from the guest_idle index.
func TestIdleHoursBuiltAtOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	b, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for i := range 10 {
		at := t0.Add(-time.Duration(i) * time.Hour)
		if err := b.CreateUser(context.Background(), &model.User{ID: fmt.Sprint("u", i), Name: fmt.Sprint("guest_u", i), Tag: model.TagGuest, CreatedAt: at, UpdatedAt: at}, nil, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	// As an older build left it: no histogram, no mark.
	if err := b.db.Update(func(tx *bbolt.Tx) error {
		if err := tx.DeleteBucket(bucketIdleHours); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(keyIdleHours)
	}); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if n, err := b.CountIdleGuests(context.Background(), t0.Add(-3*time.Hour-time.Minute)); err != nil || n != 6 {
		t.Fatalf("idle before t0-3h01m: %d, %v; want 6", n, err)
	}
}

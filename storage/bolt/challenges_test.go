package bolt_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

var devT0 = time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)

func openDeviceStore(t *testing.T) (*bolt.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dev.db")
	b, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, path
}

func putChallenge(t *testing.T, b *bolt.Store, token string, created time.Time, ttl time.Duration) {
	t.Helper()
	c := model.Challenge{Purpose: "anonymous_request", CreatedAt: created, ExpiresAt: created.Add(ttl)}
	if err := b.PutChallenge(bg, token, c); err != nil {
		t.Fatal(err)
	}
}

func countChallenges(t *testing.T, b *bolt.Store) int {
	t.Helper()
	n, err := b.CountChallenges()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestChallengeStoredOnlyAsHash(t *testing.T) {
	b, path := openDeviceStore(t)
	token := "TOKEN-5XQJ7WZKM2PLA4R6TN3BVCYEHD8S"
	putChallenge(t, b, token, devT0, 5*time.Minute)
	b.Close()

	raw, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	want := sha256.Sum256([]byte(token))
	found := false
	err = raw.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
			return bk.ForEach(func(k, v []byte) error {
				if bytes.Contains(k, []byte(token)) || bytes.Contains(v, []byte(token)) {
					return fmt.Errorf("bucket %s holds the raw challenge token", name)
				}
				if string(name) == "challenges" && bytes.Equal(k, want[:]) {
					found = true
				}
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatal("the challenge is not stored under the SHA-256 of its token")
	}
}

func TestExpiredChallengesArePurgedInBoundedSteps(t *testing.T) {
	b, _ := openDeviceStore(t)
	for i := range 40 {
		putChallenge(t, b, fmt.Sprintf("old-%d", i), devT0, 5*time.Minute)
	}
	putChallenge(t, b, "stale", devT0, 35*time.Minute) // expires after the old ones
	later := devT0.Add(time.Hour)
	putChallenge(t, b, "live", later, 5*time.Minute) // purges 16 old ones while writing
	if n := countChallenges(t, b); n != 42-16 {
		t.Fatalf("after one write: %d challenges, want %d (a bounded purge)", n, 42-16)
	}
	// Still stored (the purge went oldest first), but expired: refused.
	if _, err := b.ConsumeChallenge(bg, "stale", later); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("consume of an expired challenge: %v, want ErrNotFound", err)
	}
	if n := countChallenges(t, b); n != 8+1 {
		t.Fatalf("after consuming: %d challenges, want 9 (8 old + live)", n)
	}
	if _, err := b.ConsumeChallenge(bg, "unknown", later); !errors.Is(err, model.ErrNotFound) {
		t.Fatal(err)
	}
	if n := countChallenges(t, b); n != 1 {
		t.Fatalf("%d challenges left, want only the live one", n)
	}
	if _, err := b.ConsumeChallenge(bg, "live", later.Add(time.Minute)); err != nil {
		t.Fatalf("the live challenge was purged: %v", err)
	}
}

// A consumed challenge, and an unknown token's purge, leave nothing stored.
func TestChallengeConsumeLeavesNothing(t *testing.T) {
	b, _ := openDeviceStore(t)
	putChallenge(t, b, "tok-a", devT0, 5*time.Minute)
	if _, err := b.ConsumeChallenge(bg, "tok-a", devT0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ConsumeChallenge(bg, "never-issued", devT0); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("unknown token: %v, want ErrNotFound", err)
	}
	if n := countChallenges(t, b); n != 0 {
		t.Fatalf("%d challenges left", n)
	}
}

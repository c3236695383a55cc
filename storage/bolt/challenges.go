package bolt

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Challenges are the single-use nonces of the device key-pair grant. Only the
// SHA-256 of a challenge token is stored, so a copy of the file cannot answer
// an outstanding challenge. The buckets are created on first write, so files
// made before this feature need no migration.
var (
	bucketChallenges    = []byte("challenges")     // SHA-256(token) -> model.Challenge JSON
	bucketChallengeEnds = []byte("challenge_ends") // ExpiresAt (8-byte big-endian unix ns) + SHA-256(token) -> ""
)

func challengeHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// PutChallenge implements storage.Backend.
func (b *Store) PutChallenge(ctx context.Context, token string, c model.Challenge) error {
	if token == "" || c.ExpiresAt.IsZero() {
		return errors.New("a challenge needs a token and an expiry")
	}
	raw, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	h := challengeHash(token)
	// Batched: a burst of challenge requests shares one fsync.
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		challenges, ends, err := expiringBuckets(tx, bucketChallenges, bucketChallengeEnds)
		if err != nil {
			return err
		}
		if err := purgeExpired(challenges, ends, c.CreatedAt); err != nil {
			return err
		}
		if challenges.Get(h) != nil {
			return fmt.Errorf("challenge: %w", model.ErrExists)
		}
		if err := challenges.Put(h, raw); err != nil {
			return err
		}
		return ends.Put(expiryKey(h, c.ExpiresAt), nil)
	})
}

// ConsumeChallenge implements storage.Backend.
func (b *Store) ConsumeChallenge(ctx context.Context, token string, now time.Time) (*model.Challenge, error) {
	h := challengeHash(token)
	var out *model.Challenge
	// Read and delete in one write transaction: bbolt has one writer at a
	// time, so of concurrent consumers of a token exactly one finds it. The
	// function returns nil when the token is unknown so the purge commits.
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		out = nil
		challenges, ends, err := expiringBuckets(tx, bucketChallenges, bucketChallengeEnds)
		if err != nil {
			return err
		}
		if err := purgeExpired(challenges, ends, now); err != nil {
			return err
		}
		raw := challenges.Get(h)
		if raw == nil {
			return nil
		}
		var c model.Challenge
		if err := storage.DecodeRecord(raw, &c); err != nil {
			return fmt.Errorf("challenge record: %w", err)
		}
		if err := challenges.Delete(h); err != nil {
			return err
		}
		if err := ends.Delete(expiryKey(h, c.ExpiresAt)); err != nil {
			return err
		}
		if now.Before(c.ExpiresAt) {
			out = &c
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, model.ErrNotFound
	}
	return out, nil
}

package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Flow states (authorization codes, authorization requests waiting for a
// sign-in, ...) are stored under storage.FlowKey, never under their handle.
// The buckets are created on first write, so older files need no migration.
var (
	bucketFlows    = []byte("flows")     // storage.FlowKey -> model.FlowState JSON
	bucketFlowEnds = []byte("flow_ends") // ExpiresAt (8-byte big-endian unix ns) + key -> ""
)

// Challenges and flow states are expiring records: each lives in its
// bucket under its key, and in an expiry index (a second bucket) under
// the big-endian expiry time followed by the key, which a write walks
// from its start to delete what has expired.

// purgeLimit bounds the expired records one write deletes: each write
// adds at most one, so cleanup outpaces creation while the work per
// request stays small.
const purgeLimit = 16

// expiryKey is key's entry in an expiry index.
func expiryKey(key []byte, expires time.Time) []byte {
	k := make([]byte, 8, 8+len(key))
	binary.BigEndian.PutUint64(k, uint64(max(expires.UnixNano(), 0)))
	return append(k, key...)
}

// expiringBuckets opens (creating them if need be) the records bucket and
// its expiry index.
func expiringBuckets(tx *bbolt.Tx, name, index []byte) (records, ends *bbolt.Bucket, err error) {
	if records, err = tx.CreateBucketIfNotExists(name); err != nil {
		return nil, nil, err
	}
	if ends, err = tx.CreateBucketIfNotExists(index); err != nil {
		return nil, nil, err
	}
	return records, ends, nil
}

// purgeExpired deletes up to purgeLimit records expired at now, oldest
// first, reading only the expiry index.
func purgeExpired(records, ends *bbolt.Bucket, now time.Time) error {
	var keys [][]byte
	c := ends.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < purgeLimit; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])) > now.UnixNano() {
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := records.Delete(k[8:]); err != nil {
			return err
		}
		if err := ends.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// PutFlowState implements storage.Backend.
func (b *Store) PutFlowState(ctx context.Context, kind, handle string, f model.FlowState) error {
	if err := storage.CheckFlowState(kind, handle, &f); err != nil {
		return err
	}
	f.Kind = kind
	raw, err := json.Marshal(&f)
	if err != nil {
		return err
	}
	key := storage.FlowKey(kind, handle)
	// Batched: a burst of sign-ins shares one fsync.
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		flows, ends, err := expiringBuckets(tx, bucketFlows, bucketFlowEnds)
		if err != nil {
			return err
		}
		// The record's creation is the caller's now (the clock every
		// other flow method is given).
		if err := purgeExpired(flows, ends, f.CreatedAt); err != nil {
			return err
		}
		if flows.Get(key) != nil {
			return fmt.Errorf("flow state: %w", model.ErrExists)
		}
		if err := flows.Put(key, raw); err != nil {
			return err
		}
		return ends.Put(expiryKey(key, f.ExpiresAt), nil)
	})
}

// readFlow decodes the live record of key at now: nil when there is none
// or it expired.
func readFlow(flows *bbolt.Bucket, key []byte, now time.Time) (*model.FlowState, error) {
	if flows == nil {
		return nil, nil
	}
	raw := flows.Get(key)
	if raw == nil {
		return nil, nil
	}
	var f model.FlowState
	if err := storage.DecodeRecord(raw, &f); err != nil {
		return nil, fmt.Errorf("flow state record: %w", err)
	}
	if !now.Before(f.ExpiresAt) {
		return nil, nil
	}
	return &f, nil
}

// GetFlowState implements storage.Backend.
func (b *Store) GetFlowState(ctx context.Context, kind, handle string, now time.Time) (*model.FlowState, error) {
	var out *model.FlowState
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		var err error
		out, err = readFlow(tx.Bucket(bucketFlows), storage.FlowKey(kind, handle), now)
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case out == nil:
		return nil, model.ErrNotFound
	case !out.SpentAt.IsZero():
		return out, model.ErrSpent
	}
	return out, nil
}

// TakeFlowState implements storage.Backend: the read and the spent mark
// are one write transaction, and bbolt has one writer at a time, so of
// concurrent takes exactly one finds the record unspent.
func (b *Store) TakeFlowState(ctx context.Context, kind, handle string, now time.Time) (*model.FlowState, error) {
	key := storage.FlowKey(kind, handle)
	var out *model.FlowState
	var spent bool
	// The function may run again on the same data (batch): it sets every
	// result from scratch.
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		out, spent = nil, false
		flows, ends, err := expiringBuckets(tx, bucketFlows, bucketFlowEnds)
		if err != nil {
			return err
		}
		if out, err = readFlow(flows, key, now); err != nil || out == nil {
			return err
		}
		if spent = !out.SpentAt.IsZero(); spent {
			return nil
		}
		f := *out
		f.SpentAt = now.UTC()
		raw, err := json.Marshal(&f)
		if err != nil {
			return err
		}
		if err := flows.Put(key, raw); err != nil {
			return err
		}
		out = &f
		// The purge goes last: the record taken is live, so it stays.
		return purgeExpired(flows, ends, now)
	})
	switch {
	case err != nil:
		return nil, err
	case out == nil:
		return nil, model.ErrNotFound
	case spent:
		return out, model.ErrSpent
	}
	return out, nil
}

// RedeemFlowState implements storage.Backend: the take and the session
// are one write transaction.
func (b *Store) RedeemFlowState(ctx context.Context, kind, handle string, now time.Time, keep int, start func(f *model.FlowState) (*model.Session, error)) (*model.FlowState, int, error) {
	key := storage.FlowKey(kind, handle)
	var out *model.FlowState
	var spent bool
	var ended int
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		out, spent, ended = nil, false, 0 // a batched function may run twice
		flows, ends, err := expiringBuckets(tx, bucketFlows, bucketFlowEnds)
		if err != nil {
			return err
		}
		if out, err = readFlow(flows, key, now); err != nil || out == nil {
			return err
		}
		if spent = !out.SpentAt.IsZero(); spent {
			return nil
		}
		sess, err := start(out)
		if err != nil {
			return err
		}
		f := *out
		f.SpentAt = now.UTC()
		raw, err := json.Marshal(&f)
		if err != nil {
			return err
		}
		if err := flows.Put(key, raw); err != nil {
			return err
		}
		if ended, err = b.putSessionLimit(tx, sess, keep); err != nil {
			return err
		}
		out = &f
		return purgeExpired(flows, ends, now)
	})
	switch {
	case err != nil:
		return nil, 0, err
	case out == nil:
		return nil, 0, model.ErrNotFound
	case spent:
		return out, 0, model.ErrSpent
	}
	return out, ended, nil
}

package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// Shared limits (storage.SharedLimiter): GCRA, as the PostgreSQL backend
// keeps them. Each (limit, key) holds its theoretical arrival time (TAT):
// a try at now is allowed when max(TAT, now) + interval - now <= burst *
// interval, and then moves TAT to max(TAT, now) + interval. The bucket is
// full once TAT is not after now, so such entries are deleted (a few at a
// time, as later tries come in, through the TAT index) without changing
// any answer. Each call is one write transaction, so the buckets outlive
// the process: a restart does not give an account its guesses back.
var (
	bucketLimits    = []byte("limits")     // limitKey -> TAT (8-byte big-endian unix ns)
	bucketLimitTATs = []byte("limit_tats") // TAT + limitKey -> ""
)

// limitPurgeAge spares an entry whose bucket refilled less than this ago:
// a key in steady use (the global guest rate, below its limit, is full
// again between most tries) is not deleted and written again at each try.
const limitPurgeAge = time.Minute

// limitPurgeBatch bounds the entries one try deletes.
const limitPurgeBatch = 16

// limitKey is len(name) (2 bytes) + name + key.
func limitKey(name, key string) []byte {
	k := make([]byte, 2, 2+len(name)+len(key))
	binary.BigEndian.PutUint16(k, uint16(len(name)))
	k = append(k, name...)
	return append(k, key...)
}

func tatKey(tat int64, lk []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(lk)), uint64(max(tat, 0)))
	return append(k, lk...)
}

func readTAT(v []byte) (int64, bool) {
	if len(v) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), true
}

// setTAT stores tat for lk, moving its index entry.
func setTAT(tx *bbolt.Tx, lk []byte, tat int64) error {
	lim, tats := tx.Bucket(bucketLimits), tx.Bucket(bucketLimitTATs)
	if old, ok := readTAT(lim.Get(lk)); ok {
		if err := tats.Delete(tatKey(old, lk)); err != nil {
			return err
		}
	}
	if err := lim.Put(lk, binary.BigEndian.AppendUint64(nil, uint64(tat))); err != nil {
		return err
	}
	return tats.Put(tatKey(tat, lk), nil)
}

// purgeLimits deletes up to limitPurgeBatch entries whose TAT is not after
// cutoff, oldest first.
func purgeLimits(tx *bbolt.Tx, cutoff int64) error {
	lim, tats := tx.Bucket(bucketLimits), tx.Bucket(bucketLimitTATs)
	var keys [][]byte
	c := tats.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < limitPurgeBatch; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])) > cutoff {
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := tats.Delete(k); err != nil {
			return err
		}
		if err := lim.Delete(k[8:]); err != nil {
			return err
		}
	}
	return nil
}

// LimitTake implements storage.Backend, in a shared commit: concurrent
// tries share one fsync, each seeing the TAT the one before it wrote.
func (b *Store) LimitTake(ctx context.Context, name, key string, burst int, interval time.Duration, now time.Time) (time.Duration, error) {
	if burst <= 0 || interval <= 0 {
		return 0, errors.New("a shared limit needs a burst and an interval")
	}
	if len(name) > 0xffff {
		return 0, errors.New("a shared limit's name is too long")
	}
	lk := limitKey(name, key)
	at := now.UnixNano()
	var wait time.Duration
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		wait = 0
		if err := purgeLimits(tx, now.Add(-limitPurgeAge).UnixNano()); err != nil {
			return err
		}
		tat, ok := readTAT(tx.Bucket(bucketLimits).Get(lk))
		if !ok {
			tat = at
		}
		next := max(tat, at) + int64(interval)
		if over := next - at - int64(burst)*int64(interval); over > 0 {
			wait = time.Duration(over) // refused: nothing spent
			return nil
		}
		return setTAT(tx, lk, next)
	})
	return wait, err
}

// LimitRefund implements storage.Backend.
func (b *Store) LimitRefund(ctx context.Context, name, key string, interval time.Duration) error {
	lk := limitKey(name, key)
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		tat, ok := readTAT(tx.Bucket(bucketLimits).Get(lk))
		if !ok {
			return nil // full already
		}
		return setTAT(tx, lk, tat-int64(interval))
	})
}

// LimitReset implements storage.Backend.
func (b *Store) LimitReset(ctx context.Context, name, key string) error {
	lk := limitKey(name, key)
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		lim := tx.Bucket(bucketLimits)
		tat, ok := readTAT(lim.Get(lk))
		if !ok {
			return nil
		}
		if err := tx.Bucket(bucketLimitTATs).Delete(tatKey(tat, lk)); err != nil {
			return err
		}
		return lim.Delete(lk)
	})
}

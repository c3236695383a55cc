package bolt

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/storage"
)

// The webhook outbox (storage.Outbox). A write's events are put in the
// write's own transaction (storeEvents), so an acknowledged write never
// loses its event, not even to kill -9: the deliverer of the next start
// posts it. Records are keyed so that a cursor reads a target's records in
// delivery order (lifecycle before noisy, then oldest first); the id index
// finds a record's key by its id.
var (
	bucketOutbox    = []byte("outbox")     // outboxKey -> outboxValue
	bucketOutboxIDs = []byte("outbox_ids") // id -> its outboxKey
)

// outboxKey is len(target) (2 bytes) + target + noisy ('0' or '1') +
// CreatedAt (8-byte big-endian unix ns) + id: the length prefix keeps one
// target's records apart from any other's.
func outboxKey(r *storage.OutboxRecord) []byte {
	k := targetPrefix(r.Target)
	noisy := byte('0')
	if r.Noisy {
		noisy = '1'
	}
	k = append(k, noisy)
	k = binary.BigEndian.AppendUint64(k, uint64(max(r.CreatedAt.UnixNano(), 0)))
	return append(k, r.ID...)
}

func targetPrefix(target string) []byte {
	k := make([]byte, 2, 2+len(target)+9+36)
	binary.BigEndian.PutUint16(k, uint16(len(target)))
	return append(k, target...)
}

// parseOutboxKey reads what outboxKey wrote after the target's prefix.
func parseOutboxKey(k []byte, prefixLen int) (noisy bool, created time.Time, id string, ok bool) {
	rest := k[prefixLen:]
	if len(rest) < 9 {
		return false, time.Time{}, "", false
	}
	return rest[0] == '1', time.Unix(0, int64(binary.BigEndian.Uint64(rest[1:9]))).UTC(), string(rest[9:]), true
}

// outboxValue is a record's state and content: next (8 bytes), lease (8),
// attempts (4), len(type) (2), type, body. next and lease are unix ns: the
// record is due once both are not after now.
type outboxValue struct {
	next, lease int64
	attempts    uint32
	typ         string
	body        []byte
}

func (v *outboxValue) encode() []byte {
	b := make([]byte, 0, 22+len(v.typ)+len(v.body))
	b = binary.BigEndian.AppendUint64(b, uint64(v.next))
	b = binary.BigEndian.AppendUint64(b, uint64(v.lease))
	b = binary.BigEndian.AppendUint32(b, v.attempts)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v.typ)))
	b = append(b, v.typ...)
	return append(b, v.body...)
}

var errOutboxValue = errors.New("malformed outbox record")

// decodeOutboxValue copies what it reads out of raw (bbolt's memory).
func decodeOutboxValue(raw []byte) (outboxValue, error) {
	if len(raw) < 22 {
		return outboxValue{}, errOutboxValue
	}
	n := int(binary.BigEndian.Uint16(raw[20:22]))
	if len(raw) < 22+n {
		return outboxValue{}, errOutboxValue
	}
	return outboxValue{
		next:     int64(binary.BigEndian.Uint64(raw[0:8])),
		lease:    int64(binary.BigEndian.Uint64(raw[8:16])),
		attempts: binary.BigEndian.Uint32(raw[16:20]),
		typ:      string(raw[22 : 22+n]),
		body:     bytes.Clone(raw[22+n:]),
	}, nil
}

// putOutbox stores recs in tx, skipping ids already stored.
func putOutbox(tx *bbolt.Tx, recs []storage.OutboxRecord) error {
	bk, ids := tx.Bucket(bucketOutbox), tx.Bucket(bucketOutboxIDs)
	for i := range recs {
		r := &recs[i]
		if err := r.Check(); err != nil {
			return err
		}
		if len(r.Target) > 0xffff || len(r.Type) > 0xffff {
			return errors.New("an outbox record's target or type is too long")
		}
		if ids.Get([]byte(r.ID)) != nil {
			continue
		}
		k := outboxKey(r)
		v := outboxValue{next: r.CreatedAt.UnixNano(), typ: r.Type, body: r.Body}
		if err := bk.Put(k, v.encode()); err != nil {
			return err
		}
		if err := ids.Put([]byte(r.ID), k); err != nil {
			return err
		}
	}
	return nil
}

// storeEvents builds ev's records from what the write did and stores them
// in its transaction (see storage.Events).
func storeEvents(tx *bbolt.Tx, ev storage.Events, r storage.TxResult) error {
	if ev == nil {
		return nil
	}
	r.Tally = &storage.Tally{}
	recs, err := ev(r)
	if err != nil {
		return err
	}
	if err := addDaily(tx, r.Tally.Counts()); err != nil {
		return err
	}
	return putOutbox(tx, recs)
}

// releaseLeases ends every lease, at open: a lease is held by a process
// delivering the record, and no process has the file open before this one.
// A record the last process claimed when it died is due again at once.
func releaseLeases(tx *bbolt.Tx) error {
	bk := tx.Bucket(bucketOutbox)
	type upd struct{ k, v []byte }
	var ups []upd
	err := bk.ForEach(func(k, raw []byte) error {
		v, err := decodeOutboxValue(raw)
		if err != nil {
			return fmt.Errorf("outbox record %x: %w", k, err)
		}
		if v.lease != 0 {
			v.lease = 0
			ups = append(ups, upd{bytes.Clone(k), v.encode()})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, u := range ups {
		if err := bk.Put(u.k, u.v); err != nil {
			return err
		}
	}
	return nil
}

// OutboxPut implements storage.Backend, in a shared commit.
func (b *Store) OutboxPut(ctx context.Context, recs []storage.OutboxRecord) error {
	if len(recs) == 0 {
		return storage.CtxErr(ctx)
	}
	return b.batch(ctx, func(tx *bbolt.Tx) error { return putOutbox(tx, recs) })
}

// OutboxClaim implements storage.Backend: it reads target's records in
// order, leasing the due ones.
func (b *Store) OutboxClaim(ctx context.Context, target string, now time.Time, lease time.Duration, limit int) ([]storage.OutboxRecord, error) {
	var out []storage.OutboxRecord
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		out = nil
		bk := tx.Bucket(bucketOutbox)
		prefix := targetPrefix(target)
		type upd struct{ k, v []byte }
		var ups []upd
		c := bk.Cursor()
		for k, raw := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && len(out) < max(limit, 1); k, raw = c.Next() {
			v, err := decodeOutboxValue(raw)
			if err != nil {
				return fmt.Errorf("outbox record %x: %w", k, err)
			}
			if v.next > now.UnixNano() || v.lease > now.UnixNano() {
				continue
			}
			noisy, created, id, ok := parseOutboxKey(k, len(prefix))
			if !ok {
				return fmt.Errorf("outbox key %x: %w", k, errOutboxValue)
			}
			v.lease, v.attempts = now.Add(lease).UnixNano(), v.attempts+1
			out = append(out, storage.OutboxRecord{ID: id, Type: v.typ, Target: target, Body: v.body, Noisy: noisy, CreatedAt: created, Attempts: int(v.attempts)})
			ups = append(ups, upd{bytes.Clone(k), v.encode()})
		}
		for _, u := range ups {
			if err := bk.Put(u.k, u.v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// OutboxDelete implements storage.Backend.
func (b *Store) OutboxDelete(ctx context.Context, id string) error {
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		ids := tx.Bucket(bucketOutboxIDs)
		k := ids.Get([]byte(id))
		if k == nil {
			return nil
		}
		if err := tx.Bucket(bucketOutbox).Delete(bytes.Clone(k)); err != nil {
			return err
		}
		return ids.Delete([]byte(id))
	})
}

// OutboxRetry implements storage.Backend.
func (b *Store) OutboxRetry(ctx context.Context, id string, at time.Time) error {
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		k := tx.Bucket(bucketOutboxIDs).Get([]byte(id))
		if k == nil {
			return nil
		}
		bk := tx.Bucket(bucketOutbox)
		v, err := decodeOutboxValue(bk.Get(k))
		if err != nil {
			return fmt.Errorf("outbox record %s: %w", id, err)
		}
		v.next, v.lease = at.UnixNano(), 0
		return bk.Put(bytes.Clone(k), v.encode())
	})
}

// OutboxLen implements storage.Backend: a walk of target's keys.
func (b *Store) OutboxLen(ctx context.Context, target string) (int, error) {
	n := 0
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		prefix := targetPrefix(target)
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			n++
		}
		return nil
	})
	return n, err
}

// OutboxTrim implements storage.Backend. It reads every key of target (a
// cursor walk, once a minute at most: see internal/outbox), and only the
// values of the records it deletes.
func (b *Store) OutboxTrim(ctx context.Context, target string, before time.Time, maxRows int) ([]string, error) {
	var types []string
	err := b.update(ctx, func(tx *bbolt.Tx) error {
		types = nil
		bk, ids := tx.Bucket(bucketOutbox), tx.Bucket(bucketOutboxIDs)
		prefix := targetPrefix(target)
		type entry struct {
			k       []byte
			created time.Time
			id      string
		}
		var keep, drop []entry
		c := bk.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			_, created, id, ok := parseOutboxKey(k, len(prefix))
			if !ok {
				return fmt.Errorf("outbox key %x: %w", k, errOutboxValue)
			}
			e := entry{bytes.Clone(k), created, id}
			if created.Before(before) {
				drop = append(drop, e)
			} else {
				keep = append(keep, e)
			}
		}
		if maxRows > 0 && len(keep) > maxRows {
			// Newest first; the oldest beyond maxRows go.
			slices.SortFunc(keep, func(x, y entry) int { return cmp.Or(y.created.Compare(x.created), cmp.Compare(y.id, x.id)) })
			drop = append(drop, keep[maxRows:]...)
		}
		for _, e := range drop {
			v, err := decodeOutboxValue(bk.Get(e.k))
			if err != nil {
				return fmt.Errorf("outbox record %s: %w", e.id, err)
			}
			types = append(types, v.typ)
			if err := bk.Delete(e.k); err != nil {
				return err
			}
			if err := ids.Delete([]byte(e.id)); err != nil {
				return err
			}
		}
		return nil
	})
	return types, err
}

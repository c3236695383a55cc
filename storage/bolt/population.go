package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// The population indexes behind Backend's queries. Every user write goes
// through saveUser, which keeps them in the same transaction as the record:
//   - guest_idle: ActiveAt + id of each guest that is not Kept, read by
//     ScanIdleGuests up to its bound;
//   - orphans: ids of guests that are not Kept, have no DeviceKID and have
//     OrphanedAt set, read by ScanOrphans;
//   - meta counters of guests and of kept guests, read by GuestCounts.
//
// They index record fields as the contract defines the queries; which of
// these guests expire is decided by accounts.Prunable, not here.
var (
	bucketGuestIdle = []byte("guest_idle")
	bucketOrphans   = []byte("orphans")
	keyLiveGuests   = []byte("live_guests")
	keyKeptGuests   = []byte("kept_guests")
)

func idleKey(u *model.User) []byte {
	k := make([]byte, 8, 8+len(u.ID))
	binary.BigEndian.PutUint64(k, uint64(max(u.ActiveAt().UnixNano(), 0)))
	return append(k, u.ID...)
}

// inIdleIndex and inOrphanIndex are the index definitions of ScanIdleGuests
// and ScanOrphans.
func inIdleIndex(u *model.User) bool { return u != nil && u.Ephemeral() && !u.Kept }

func inOrphanIndex(u *model.User) bool {
	return inIdleIndex(u) && !u.OrphanedAt.IsZero() && u.DeviceKID == ""
}

func counter(meta *bbolt.Bucket, key []byte, delta int64) error {
	if delta == 0 {
		return nil
	}
	var n int64
	if v := meta.Get(key); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	buf := make([]byte, 8)
	binary.BigEndian.PutUint64(buf, uint64(max(n+delta, 0)))
	return meta.Put(key, buf)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// saveUser writes u (nil deletes old) and updates the population indexes.
// old is the stored version, nil for a new user.
func (b *Store) saveUser(tx *bbolt.Tx, old, u *model.User) error {
	if old != nil {
		b.cache.InvalidateUser(old.ID)
	}
	if u != nil {
		b.cache.InvalidateUser(u.ID)
	}
	return b.writeUser(tx, old, u)
}

// writeUser is saveUser leaving the identity cache alone, for a write that
// updates the cache itself.
func (b *Store) writeUser(tx *bbolt.Tx, old, u *model.User) error {
	// The verified-email index first: a taken address refuses before
	// anything is written.
	if oldKey, newKey := old.VerifiedEmailKey(), u.VerifiedEmailKey(); oldKey != newKey {
		emails := tx.Bucket(bucketEmails)
		if newKey != "" {
			if owner := emails.Get([]byte(newKey)); owner != nil && string(owner) != u.ID {
				return model.ErrEmailTaken
			}
		}
		if oldKey != "" {
			if err := emails.Delete([]byte(oldKey)); err != nil {
				return err
			}
		}
		if newKey != "" {
			if err := emails.Put([]byte(newKey), []byte(u.ID)); err != nil {
				return err
			}
		}
	}
	idle, orphans, meta := tx.Bucket(bucketGuestIdle), tx.Bucket(bucketOrphans), tx.Bucket(bucketMeta)
	if inIdleIndex(old) {
		if err := idle.Delete(idleKey(old)); err != nil {
			return err
		}
	}
	if err := moveIdleHour(tx, old, u); err != nil {
		return err
	}
	if inIdleIndex(u) {
		if err := idle.Put(idleKey(u), nil); err != nil {
			return err
		}
	}
	if old != nil && inOrphanIndex(old) && !inOrphanIndex(u) {
		if err := orphans.Delete([]byte(old.ID)); err != nil {
			return err
		}
	}
	if inOrphanIndex(u) {
		if err := orphans.Put([]byte(u.ID), nil); err != nil {
			return err
		}
	}
	isGuest := func(x *model.User) bool { return x != nil && x.IsAnonymous() }
	isKept := func(x *model.User) bool { return isGuest(x) && x.Kept }
	if err := counter(meta, keyLiveGuests, b2i(isGuest(u))-b2i(isGuest(old))); err != nil {
		return err
	}
	if err := counter(meta, keyKeptGuests, b2i(isKept(u))-b2i(isKept(old))); err != nil {
		return err
	}
	if err := counter(meta, keyUsers, b2i(u != nil)-b2i(old != nil)); err != nil {
		return err
	}
	if u == nil {
		return tx.Bucket(bucketUsers).Delete([]byte(old.ID))
	}
	return putJSON(tx.Bucket(bucketUsers), u.ID, u)
}

// GuestCounts implements storage.Backend.
func (b *Store) GuestCounts(ctx context.Context) (live, kept int64, err error) {
	err = b.view(ctx, func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyLiveGuests); len(v) == 8 {
			live = int64(binary.BigEndian.Uint64(v))
		}
		if v := meta.Get(keyKeptGuests); len(v) == 8 {
			kept = int64(binary.BigEndian.Uint64(v))
		}
		return nil
	})
	return live, kept, err
}

// TouchUsers implements storage.Backend, in one write transaction. The identity
// cache keeps the touched users, with their new time (IdentityCache.TouchUsers).
func (b *Store) TouchUsers(ctx context.Context, at map[string]time.Time) (int, error) {
	var touched map[string]time.Time
	err := b.update(ctx, func(tx *bbolt.Tx) error {
		touched = make(map[string]time.Time, len(at))
		users := tx.Bucket(bucketUsers)
		for id, t := range at {
			var u model.User
			if err := getJSON(users, id, &u); err != nil {
				if errors.Is(err, model.ErrNotFound) {
					continue
				}
				return err
			}
			if !t.After(u.LastActiveAt) {
				continue
			}
			old := u
			u.LastActiveAt = t.UTC()
			if err := b.writeUser(tx, &old, &u); err != nil {
				return err
			}
			touched[id] = u.LastActiveAt
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	b.cache.TouchUsers(touched)
	return len(touched), nil
}

// ScanIdleGuests implements storage.Backend: it reads the guest_idle index, oldest
// first, up to the first entry not before before.
func (b *Store) ScanIdleGuests(ctx context.Context, before time.Time, fn func(u *model.User) bool) error {
	return b.view(ctx, func(tx *bbolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		c := tx.Bucket(bucketGuestIdle).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])) >= before.UnixNano() {
				return nil
			}
			var u model.User
			if err := getJSON(users, string(k[8:]), &u); err != nil {
				return err
			}
			if !fn(&u) {
				return nil
			}
		}
		return nil
	})
}

// ScanOrphans implements storage.Backend: it reads the orphans index.
func (b *Store) ScanOrphans(ctx context.Context, fn func(u *model.User) bool) error {
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		users := tx.Bucket(bucketUsers)
		return tx.Bucket(bucketOrphans).ForEach(func(k, _ []byte) error {
			var u model.User
			if err := getJSON(users, string(k), &u); err != nil {
				return err
			}
			if !fn(&u) {
				return errStopScan
			}
			return nil
		})
	})
	if errors.Is(err, errStopScan) {
		return nil
	}
	return err
}

var errStopScan = errors.New("stop")

// DeleteUsersIf implements storage.Backend, in one write transaction.
func (b *Store) DeleteUsersIf(ctx context.Context, ids []string, pred func(u *model.User) bool, ev storage.Events) ([]model.User, error) {
	var deleted []model.User
	err := b.update(ctx, func(tx *bbolt.Tx) error {
		deleted = deleted[:0]
		for _, id := range ids {
			var u model.User
			if err := getJSON(tx.Bucket(bucketUsers), id, &u); err != nil {
				if errors.Is(err, model.ErrNotFound) {
					continue
				}
				return err
			}
			if !pred(&u) {
				continue
			}
			if err := b.deleteUser(tx, &u); err != nil {
				return err
			}
			deleted = append(deleted, u)
		}
		return storeEvents(tx, ev, storage.TxResult{Deleted: deleted})
	})
	return deleted, err
}

// ListUsers implements storage.Backend.
func (b *Store) ListUsers(ctx context.Context, after, tag string, limit int) (users []model.User, next string, err error) {
	err = b.view(ctx, func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketUsers).Cursor()
		k, v := c.First()
		if after != "" {
			k, v = c.Seek([]byte(after))
			if k != nil && bytes.Equal(k, []byte(after)) {
				k, v = c.Next()
			}
		}
		for ; k != nil; k, v = c.Next() {
			var u model.User
			if err := storage.DecodeRecord(v, &u); err != nil {
				return err
			}
			if tag != "" && u.Tag != tag {
				continue
			}
			if len(users) == limit {
				next = users[len(users)-1].ID
				return nil
			}
			users = append(users, u)
		}
		return nil
	})
	return users, next, err
}

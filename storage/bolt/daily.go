package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// bucketDaily holds the daily counters (storage.DailyStore): key day
// ("2006-01-02"), a zero byte and the series; value an 8-byte big-endian
// count. Keys sort by day, so Daily reads one cursor range.
var bucketDaily = []byte("daily")

func dailyKey(day, series string) []byte {
	k := make([]byte, 0, len(day)+1+len(series))
	k = append(k, day...)
	k = append(k, 0)
	return append(k, series...)
}

// addDaily adds counts in tx.
func addDaily(tx *bbolt.Tx, counts []storage.DayCount) error {
	if len(counts) == 0 {
		return nil
	}
	bk := tx.Bucket(bucketDaily)
	for _, c := range counts {
		if err := storage.CheckDayCount(c); err != nil {
			return err
		}
		k := dailyKey(c.Day, c.Series)
		var n int64
		if v := bk.Get(k); len(v) == 8 {
			n = int64(binary.BigEndian.Uint64(v))
		}
		buf := make([]byte, 8)
		binary.BigEndian.PutUint64(buf, uint64(n+c.N))
		if err := bk.Put(k, buf); err != nil {
			return err
		}
	}
	return nil
}

// AddDaily implements storage.Backend, in a shared commit.
func (b *Store) AddDaily(ctx context.Context, counts []storage.DayCount) error {
	for _, c := range counts {
		if err := storage.CheckDayCount(c); err != nil {
			return err
		}
	}
	if len(counts) == 0 {
		return storage.CtxErr(ctx)
	}
	return b.batch(ctx, func(tx *bbolt.Tx) error { return addDaily(tx, counts) })
}

// Daily implements storage.Backend: one cursor range over the days asked.
func (b *Store) Daily(ctx context.Context, from, to string) ([]storage.DayCount, error) {
	var out []storage.DayCount
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		out = out[:0]
		c := tx.Bucket(bucketDaily).Cursor()
		for k, v := c.Seek([]byte(from)); k != nil; k, v = c.Next() {
			day, series, ok := strings.Cut(string(k), "\x00")
			if !ok || day > to {
				break
			}
			if len(v) != 8 {
				continue
			}
			if n := int64(binary.BigEndian.Uint64(v)); n != 0 {
				out = append(out, storage.DayCount{Day: day, Series: series, N: n})
			}
		}
		return nil
	})
	return out, err
}

// CountIdleGuests implements storage.Backend: the idle-hour histogram's
// whole hours before before's hour, then the guest_idle index's entries of
// that last hour, up to before.
func (b *Store) CountIdleGuests(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	limit := before.UnixNano()
	last := unixHour(before)
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		n = 0
		c := tx.Bucket(bucketIdleHours).Cursor()
		for k, v := c.First(); k != nil && int64(binary.BigEndian.Uint64(k)) < last; k, v = c.Next() {
			if len(v) == 8 {
				n += int64(binary.BigEndian.Uint64(v))
			}
		}
		ic := tx.Bucket(bucketGuestIdle).Cursor()
		from := binary.BigEndian.AppendUint64(nil, uint64(max(last*3600*int64(time.Second), 0)))
		for k, _ := ic.Seek(from); k != nil; k, _ = ic.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])) >= limit {
				break
			}
			n++
		}
		return nil
	})
	return n, err
}

// ListUserSessions implements storage.Backend: the user_sessions index's
// range of the user.
func (b *Store) ListUserSessions(ctx context.Context, userID string) ([]model.Session, error) {
	var out []model.Session
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		out = out[:0]
		prefix := userSessionKey(userID, "")
		sessions := tx.Bucket(bucketSessions)
		c := tx.Bucket(bucketUserSessions).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var s model.Session
			if err := getJSON(sessions, string(k[len(prefix):]), &s); err != nil {
				if errors.Is(err, model.ErrNotFound) {
					continue
				}
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b model.Session) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, err
}

// bucketIdleHours counts the guest_idle index's entries by the UTC hour of
// their ActiveAt: key the hour (8-byte big-endian unix hours), value an
// 8-byte count; an hour with none has no key. CountIdleGuests sums the
// hours before a time instead of reading every idle guest's entry, so it
// reads at most one key per hour of the guest TTL plus one hour's entries.
// keyIdleHours marks a file whose histogram is complete (built at open for
// a file written before it existed).
var (
	bucketIdleHours = []byte("idle_hours")
	keyIdleHours    = []byte("idle_hours_built")
)

func unixHour(t time.Time) int64 { return t.Unix() / 3600 }

func hourKey(h int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(max(h, 0)))
}

func addIdleHour(bk *bbolt.Bucket, h, delta int64) error {
	k := hourKey(h)
	var n int64
	if v := bk.Get(k); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	if n += delta; n <= 0 {
		return bk.Delete(k)
	}
	return bk.Put(k, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// moveIdleHour keeps the idle-hour histogram as a user's write changes its
// idle-index entry from old's to u's (either may be nil or not indexed).
func moveIdleHour(tx *bbolt.Tx, old, u *model.User) error {
	in, was := inIdleIndex(u), inIdleIndex(old)
	if in && was && unixHour(old.ActiveAt()) == unixHour(u.ActiveAt()) {
		return nil
	}
	bk := tx.Bucket(bucketIdleHours)
	if was {
		if err := addIdleHour(bk, unixHour(old.ActiveAt()), -1); err != nil {
			return err
		}
	}
	if in {
		return addIdleHour(bk, unixHour(u.ActiveAt()), 1)
	}
	return nil
}

// buildIdleHours builds the idle-hour histogram from the guest_idle index,
// once, for a file written before it existed.
func buildIdleHours(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta.Get(keyIdleHours) != nil {
		return nil
	}
	hours := map[int64]int64{}
	err := tx.Bucket(bucketGuestIdle).ForEach(func(k, _ []byte) error {
		if len(k) >= 8 {
			hours[int64(binary.BigEndian.Uint64(k[:8]))/int64(time.Hour)]++
		}
		return nil
	})
	if err != nil {
		return err
	}
	bk := tx.Bucket(bucketIdleHours)
	for h, n := range hours {
		if err := bk.Put(hourKey(h), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
			return err
		}
	}
	return meta.Put(keyIdleHours, []byte{1})
}

// CompactCounters implements storage.Backend: bbolt's counters are one key
// each, with nothing to fold.
func (b *Store) CompactCounters(ctx context.Context, _ time.Time) error { return storage.CtxErr(ctx) }

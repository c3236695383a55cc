package bolt

import (
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Test-only views of a Bolt's internals.

// Writes counts the write transactions committed since the file was opened.
func (b *Store) Writes() uint64 { return b.commits.Load() }

// TxID is the id of the last committed write transaction.
func (b *Store) TxID() (id int) {
	b.db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil })
	return id
}

// NoFreelistSync reports whether commits skip writing the free-page list.
func (b *Store) NoFreelistSync() bool { return b.db.NoFreelistSync }

// CachedIdentities is how many users the identity cache holds.
func (b *Store) CachedIdentities() int { return b.cache.Len() }

// CountChallenges reports how many challenges are stored, expired or not.
func (b *Store) CountChallenges() (int, error) {
	var n int
	err := b.db.View(func(tx *bbolt.Tx) error {
		if bk := tx.Bucket(bucketChallenges); bk != nil {
			n = bk.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// PutUserUnreported writes u without telling the identity cache, as a write
// by another process sharing a store would be.
func (b *Store) PutUserUnreported(u *model.User) error {
	return b.db.Update(func(tx *bbolt.Tx) error { return putJSON(tx.Bucket(bucketUsers), u.ID, u) })
}

// DeleteSessionUnreported deletes a session without telling the cache.
func (b *Store) DeleteSessionUnreported(id string) error {
	return b.db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bucketSessions).Delete([]byte(id)) })
}

// SetCounterForTest overwrites a meta counter.
func (b *Store) SetCounterForTest(name string, n int64) error {
	return b.db.Update(func(tx *bbolt.Tx) error { return putCounter(tx.Bucket(bucketMeta), []byte(name), n) })
}

// PagesWritten is how many pages the committed write transactions wrote.
func (b *Store) PagesWritten() int64 { st := b.db.Stats(); return st.TxStats.GetWrite() }

// Within fails t unless fn returns within d (its error fails t too): a
// test of a write that must not wait (a lone write with a batch delay of
// an hour, say) fails at once instead of hanging until the test binary's
// timeout.
func Within(t testing.TB, d time.Duration, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		t.Fatalf("%s: not done after %v", what, d)
	}
}

// CountLimits is how many limit entries (and TAT index entries) the file
// holds.
func (b *Store) CountLimits() (entries, index int) {
	_ = b.db.View(func(tx *bbolt.Tx) error {
		entries, index = tx.Bucket(bucketLimits).Stats().KeyN, tx.Bucket(bucketLimitTATs).Stats().KeyN
		return nil
	})
	return entries, index
}

package storage

import (
	bolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Test-only views of a Bolt's internals.

// Writes counts the write transactions committed since the file was opened.
func (b *Bolt) Writes() uint64 { return b.commits.Load() }

// TxID is the id of the last committed write transaction.
func (b *Bolt) TxID() (id int) {
	b.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

// NoFreelistSync reports whether commits skip writing the free-page list.
func (b *Bolt) NoFreelistSync() bool { return b.db.NoFreelistSync }

// CachedIdentities is how many users the identity cache holds.
func (b *Bolt) CachedIdentities() int { return b.cache.Len() }

// CountChallenges reports how many challenges are stored, expired or not.
func (b *Bolt) CountChallenges() (int, error) {
	var n int
	err := b.db.View(func(tx *bolt.Tx) error {
		if bk := tx.Bucket(bucketChallenges); bk != nil {
			n = bk.Stats().KeyN
		}
		return nil
	})
	return n, err
}

// PutUserUnreported writes u without telling the identity cache, as a write
// by another process sharing a store would be.
func (b *Bolt) PutUserUnreported(u *model.User) error {
	return b.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketUsers), u.ID, u) })
}

// DeleteSessionUnreported deletes a session without telling the cache.
func (b *Bolt) DeleteSessionUnreported(id string) error {
	return b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketSessions).Delete([]byte(id)) })
}

// SetCounterForTest overwrites a meta counter.
func (b *Bolt) SetCounterForTest(name string, n int64) error {
	return b.db.Update(func(tx *bolt.Tx) error { return putCounter(tx.Bucket(bucketMeta), []byte(name), n) })
}

// PagesWritten is how many pages the committed write transactions wrote.
func (b *Bolt) PagesWritten() int64 { st := b.db.Stats(); return st.TxStats.GetWrite() }

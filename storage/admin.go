package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Stats describes the store, all read at one point in time.
type Stats struct {
	// Path is what Describe says: the bbolt file's path.
	Path string `json:"path"`
	// FileSize is the file's size on disk; DataSize the part in use, which
	// is also the exact size of a backup (for bbolt).
	FileSize int64 `json:"file_size"`
	DataSize int64 `json:"data_size"`
	// Users counts every user; NormalUsers those that are not guests.
	Users       int64 `json:"users"`
	NormalUsers int64 `json:"normal_users"`
	LiveGuests  int64 `json:"live_guests"`
	KeptGuests  int64 `json:"kept_guests"`
	Sessions    int64 `json:"sessions"`
}

// Stats implements Backend. Counts come from counters kept in the same
// transactions as the records (see checkCounts), so this reads a handful of
// keys however large the store is.
func (b *Bolt) Stats(ctx context.Context) (*Stats, error) {
	st := &Stats{Path: b.Path()}
	err := b.view(ctx, func(tx *bolt.Tx) error {
		st.DataSize = tx.Size()
		meta := tx.Bucket(bucketMeta)
		st.Users = readCounter(meta, keyUsers)
		st.Sessions = readCounter(meta, keySessions)
		st.LiveGuests = readCounter(meta, keyLiveGuests)
		st.KeptGuests = readCounter(meta, keyKeptGuests)
		return nil
	})
	if err != nil {
		return nil, err
	}
	st.NormalUsers = max(st.Users-st.LiveGuests, 0)
	if fi, err := os.Stat(st.Path); err == nil {
		st.FileSize = fi.Size()
	}
	return st, nil
}

// Backup implements Backend: a copy of the whole file, openable with
// OpenBolt, from one read transaction while writers go on. Cancelling ctx
// stops the copy at its next write.
func (b *Bolt) Backup(ctx context.Context, w io.Writer, size func(n int64)) (int64, error) {
	var n int64
	err := b.view(ctx, func(tx *bolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		return err
	})
	return n, err
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// CheckBoltFile checks that path is a usable guestauth bbolt file (a backup,
// say) by opening it read-only: bbolt validates its meta pages, and the file
// must hold a users bucket.
func CheckBoltFile(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers) == nil {
			return errors.New("it has no users bucket")
		}
		return nil
	})
}

// The users and sessions counters live in the meta bucket and change in the
// same transactions as the records. A build that predates them, or a
// process killed before Close, may leave them behind the records; so Close
// stamps them with the id of its own commit, and the next open, finding any
// other commit after the stamp, counts the records again (once: a walk of
// the two buckets' pages).
var (
	keyUsers    = []byte("users")
	keySessions = []byte("sessions")
	keyCountsAt = []byte("counts_at")
)

func readCounter(meta *bolt.Bucket, key []byte) int64 {
	if v := meta.Get(key); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func putCounter(meta *bolt.Bucket, key []byte, n int64) error {
	buf := make([]byte, 8)
	binary.BigEndian.PutUint64(buf, uint64(max(n, 0)))
	return meta.Put(key, buf)
}

// checkCounts recounts users and sessions unless the last commit before tx
// was Close's stamp.
func checkCounts(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(keyCountsAt); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) == int64(tx.ID())-1 {
		return nil
	}
	if err := putCounter(meta, keyUsers, int64(tx.Bucket(bucketUsers).Stats().KeyN)); err != nil {
		return err
	}
	return putCounter(meta, keySessions, int64(tx.Bucket(bucketSessions).Stats().KeyN))
}

// markCounts stamps the counters as exact as of tx's commit.
func markCounts(tx *bolt.Tx) error {
	return putCounter(tx.Bucket(bucketMeta), keyCountsAt, int64(tx.ID()))
}

package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/storage"
)

// Stats implements storage.Backend. Counts come from counters kept in the same
// transactions as the records (see checkCounts), so this reads a handful of
// keys however large the store is.
func (b *Store) Stats(ctx context.Context) (*storage.Stats, error) {
	st := &storage.Stats{Path: b.Path()}
	err := b.view(ctx, func(tx *bbolt.Tx) error {
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

// Counts implements storage.Backend: the counters Stats reads.
func (b *Store) Counts(ctx context.Context) (*storage.Stats, error) {
	st := &storage.Stats{}
	err := b.view(ctx, func(tx *bbolt.Tx) error {
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
	return st, nil
}

// Backup implements storage.Backend: a copy of the whole file, openable with
// Open, from one read transaction while writers go on. Cancelling ctx
// stops the copy at its next write.
func (b *Store) Backup(ctx context.Context, w io.Writer, size func(n int64)) (int64, error) {
	var n int64
	err := b.view(ctx, func(tx *bbolt.Tx) error {
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

// CheckFile checks that path is a usable guestauth bbolt file (a backup,
// say) by opening it read-only: bbolt validates its meta pages, and the file
// must hold a users bucket.
func CheckFile(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
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

func readCounter(meta *bbolt.Bucket, key []byte) int64 {
	if v := meta.Get(key); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func putCounter(meta *bbolt.Bucket, key []byte, n int64) error {
	buf := make([]byte, 8)
	binary.BigEndian.PutUint64(buf, uint64(max(n, 0)))
	return meta.Put(key, buf)
}

// checkCounts recounts users and sessions unless the last commit before tx
// was Close's stamp.
func checkCounts(tx *bbolt.Tx) error {
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
func markCounts(tx *bbolt.Tx) error {
	return putCounter(tx.Bucket(bucketMeta), keyCountsAt, int64(tx.ID()))
}

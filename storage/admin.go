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

// Stats implements Backend. Counts come from bbolt's page headers,
// not from decoding records, so this is cheap even with many users.
func (b *Bolt) Stats(ctx context.Context) (*Stats, error) {
	st := &Stats{Path: b.Path()}
	err := b.view(ctx, func(tx *bolt.Tx) error {
		st.DataSize = tx.Size()
		st.Users = int64(tx.Bucket(bucketUsers).Stats().KeyN)
		st.Sessions = int64(tx.Bucket(bucketSessions).Stats().KeyN)
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyLiveGuests); len(v) == 8 {
			st.LiveGuests = int64(binary.BigEndian.Uint64(v))
		}
		if v := meta.Get(keyKeptGuests); len(v) == 8 {
			st.KeptGuests = int64(binary.BigEndian.Uint64(v))
		}
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

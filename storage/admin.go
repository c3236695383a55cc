package storage

import (
	"encoding/binary"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
)

// Stats describes the file, all read from one transaction.
type Stats struct {
	Path string `json:"path"`
	// FileSize is the file's size on disk; DataSize the part in use, which
	// is also the exact size of a backup.
	FileSize int64 `json:"file_size"`
	DataSize int64 `json:"data_size"`
	// Users counts every user; NormalUsers those that are not guests.
	Users       int64 `json:"users"`
	NormalUsers int64 `json:"normal_users"`
	LiveGuests  int64 `json:"live_guests"`
	KeptGuests  int64 `json:"kept_guests"`
	Sessions    int64 `json:"sessions"`
}

// Stats counts users and sessions. Counts come from bbolt's page headers,
// not from decoding records, so this is cheap even with many users.
func (b *Bolt) Stats() (*Stats, error) {
	st := &Stats{Path: b.Path()}
	err := b.db.View(func(tx *bolt.Tx) error {
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

// Backup writes a consistent copy of the whole file to w from one read
// transaction, while writers go on. size, when not nil, is called with the
// copy's exact length before anything is written (for Content-Length).
func (b *Bolt) Backup(w io.Writer, size func(n int64)) (int64, error) {
	var n int64
	err := b.db.View(func(tx *bolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

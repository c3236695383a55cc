package bolt_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// Stats reports the file's path and sizes (the counts are in the suite).
func TestStatsFile(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	mustCreate(t, b, newUser("g1", "guest_g1"), newSession("s1", "g1"), nil)
	st, err := b.Stats(bg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Path != path || st.DataSize <= 0 || st.FileSize < st.DataSize || st.Users != 1 {
		t.Fatalf("stats: %+v", st)
	}
	var buf bytes.Buffer
	if n, err := b.Backup(bg, &buf, nil); err != nil || n != st.DataSize {
		t.Fatalf("backup of %d bytes (%v); DataSize says %d", n, err, st.DataSize)
	}
}

func TestBackupIsAnOpenableCopy(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("g1", "guest_g1"), newSession("s1", "g1"), nil)
	mustCreate(t, b, newUser("g2", "guest_g2"), nil, nil)

	var buf bytes.Buffer
	var announced int64 = -1
	n, err := b.Backup(bg, &buf, func(size int64) { announced = size })
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || announced != n {
		t.Fatalf("wrote %d bytes, buffer %d, announced %d", n, buf.Len(), announced)
	}
	// Writes after the copy must not show in it.
	mustCreate(t, b, newUser("g3", "guest_g3"), nil, nil)

	path := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := bolt.Open(path, bolt.Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	users, next, err := c.ListUsers(bg, "", "", 10)
	if err != nil || next != "" {
		t.Fatalf("ListUsers: %v, next %q", err, next)
	}
	if len(users) != 2 || users[0].ID != "g1" || users[1].ID != "g2" {
		t.Fatalf("copy holds %+v", users)
	}
	if s, err := c.GetSession(bg, "s1"); err != nil || s.UserID != "g1" {
		t.Fatalf("session in copy: %+v, %v", s, err)
	}
}

func TestCheckBoltFile(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	b.Close()
	if err := bolt.CheckFile(path); err != nil {
		t.Fatalf("a store file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(junk, bytes.Repeat([]byte("x"), 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := bolt.CheckFile(junk); err == nil {
		t.Fatal("a junk file passed")
	}
}

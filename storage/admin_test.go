package storage_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/storage"
)

func TestStatsCounts(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	st, err := b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Users != 0 || st.Sessions != 0 || st.LiveGuests != 0 || st.Path != path || st.DataSize <= 0 || st.FileSize < st.DataSize {
		t.Fatalf("empty store stats: %+v", st)
	}

	mustCreate(t, b, newUser("g1", "guest_g1"), newSession("s1", "g1"), nil)
	mustCreate(t, b, newUser("g2", "guest_g2"), newSession("s2", "g2"), nil)
	normal := newUser("n1", "alice")
	normal.Tag = storage.TagNormal
	mustCreate(t, b, normal, newSession("s3", "n1"), nil)
	if err := b.PutSession(newSession("s4", "n1")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SetKept("g2", true); err != nil {
		t.Fatal(err)
	}

	st, err = b.Stats()
	if err != nil {
		t.Fatal(err)
	}
	want := storage.Stats{Path: path, Users: 3, NormalUsers: 1, LiveGuests: 2, KeptGuests: 1, Sessions: 4}
	got := *st
	got.FileSize, got.DataSize = 0, 0
	if got != want {
		t.Fatalf("stats = %+v, want %+v", got, want)
	}
}

func TestBackupIsAnOpenableCopy(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("g1", "guest_g1"), newSession("s1", "g1"), nil)
	mustCreate(t, b, newUser("g2", "guest_g2"), nil, nil)

	var buf bytes.Buffer
	var announced int64 = -1
	n, err := b.Backup(&buf, func(size int64) { announced = size })
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
	c, err := storage.OpenBolt(path, storage.Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	users, next, err := c.ListUsers("", "", 10)
	if err != nil || next != "" {
		t.Fatalf("ListUsers: %v, next %q", err, next)
	}
	if len(users) != 2 || users[0].ID != "g1" || users[1].ID != "g2" {
		t.Fatalf("copy holds %+v", users)
	}
	if s, err := c.GetSession("s1"); err != nil || s.UserID != "g1" {
		t.Fatalf("session in copy: %+v, %v", s, err)
	}
}

package storage_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/storage"
)

func openTemp(t *testing.T) (*storage.Bolt, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store.db")
	b, err := storage.OpenBolt(path, storage.Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, path
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func newUser(id, name string) *storage.User {
	return &storage.User{ID: id, Name: name, Tag: storage.TagGuest, CreatedAt: t0, UpdatedAt: t0}
}

func newSession(id, userID string) *storage.Session {
	return &storage.Session{
		ID: id, UserID: userID, ClientID: "app", AuthTime: t0, CreatedAt: t0, LastUsedAt: t0,
		ExpiresAt: t0.Add(time.Hour), RefreshKey: []byte("k-" + id), Generation: 1,
	}
}

func mustCreate(t *testing.T, b *storage.Bolt, u *storage.User, s *storage.Session, d *storage.Device) {
	t.Helper()
	if err := b.CreateUser(u, s, d); err != nil {
		t.Fatalf("CreateUser(%s): %v", u.ID, err)
	}
}

func TestCreateAndGetUser(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	u := newUser("u1", "Alice")
	u.DisplayName = "Alice A."
	mustCreate(t, b, u, newSession("s1", "u1"), nil)

	got, err := b.GetUser("u1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != "u1" || got.Name != "Alice" || got.DisplayName != "Alice A." || got.Tag != storage.TagGuest || !got.CreatedAt.Equal(t0) {
		t.Fatalf("GetUser = %+v", got)
	}
	if !got.IsAnonymous() {
		t.Fatal("a guest-user must be anonymous")
	}
	// Names are matched case-insensitively and after trimming.
	for _, name := range []string{"Alice", "alice", "ALICE", "  aLiCe "} {
		got, err := b.GetUserByName(name)
		if err != nil || got.ID != "u1" {
			t.Fatalf("GetUserByName(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := b.GetUser("nobody"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetUser(missing) err = %v, want ErrNotFound", err)
	}
	if _, err := b.GetUserByName("bob"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetUserByName(missing) err = %v, want ErrNotFound", err)
	}
	s, err := b.GetSession("s1")
	if err != nil || s.UserID != "u1" || s.ClientID != "app" || string(s.RefreshKey) != "k-s1" || s.Generation != 1 {
		t.Fatalf("GetSession = %+v, %v", s, err)
	}
}

func TestCreateUserRefusals(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("u1", "Alice"), nil, nil)

	if err := b.CreateUser(newUser("u2", "aLICE"), newSession("s2", "u2"), nil); !errors.Is(err, storage.ErrNameTaken) {
		t.Fatalf("name taken in another case: err = %v, want ErrNameTaken", err)
	}
	// The refused create left nothing behind.
	if _, err := b.GetUser("u2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused user was stored: %v", err)
	}
	if _, err := b.GetSession("s2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("refused user's session was stored: %v", err)
	}
	// Same id, different record: refused.
	other := newUser("u1", "Carol")
	other.CreatedAt = t0.Add(time.Second)
	if err := b.CreateUser(other, nil, nil); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("duplicate id: err = %v, want ErrExists", err)
	}
	if err := b.CreateUser(&storage.User{ID: "u3"}, nil, nil); err == nil {
		t.Fatal("a user without a name was accepted")
	}
	if err := b.PutSession(newSession("s9", "ghost")); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("PutSession for a missing user: err = %v, want ErrNotFound", err)
	}
}

func TestUpdateUserMovesNameIndex(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("u1", "guest_one"), nil, nil)
	mustCreate(t, b, newUser("u2", "Bob"), nil, nil)

	got, err := b.UpdateUser("u1", func(u *storage.User) error {
		u.Name = "Alice"
		u.Tag = storage.TagNormal
		return nil
	})
	if err != nil || got.Name != "Alice" || got.Tag != storage.TagNormal {
		t.Fatalf("UpdateUser = %+v, %v", got, err)
	}
	if _, err := b.GetUserByName("guest_one"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("old name still indexed: %v", err)
	}
	if u, err := b.GetUserByName("alice"); err != nil || u.ID != "u1" || u.Tag != storage.TagNormal {
		t.Fatalf("new name lookup = %+v, %v", u, err)
	}
	// The old name is free again.
	mustCreate(t, b, newUser("u3", "GUEST_ONE"), nil, nil)

	// Renaming onto a taken name (any case) is refused and changes nothing.
	if _, err := b.UpdateUser("u1", func(u *storage.User) error { u.Name = "BOB"; u.DisplayName = "x"; return nil }); !errors.Is(err, storage.ErrNameTaken) {
		t.Fatalf("rename to taken name: err = %v, want ErrNameTaken", err)
	}
	if u, _ := b.GetUser("u1"); u.Name != "Alice" || u.DisplayName != "" {
		t.Fatalf("refused update was applied: %+v", u)
	}
	if u, err := b.GetUserByName("bob"); err != nil || u.ID != "u2" {
		t.Fatalf("refused rename moved the other user's name: %+v, %v", u, err)
	}
	// Changing only the case of one's own name is fine.
	if u, err := b.UpdateUser("u1", func(u *storage.User) error { u.Name = "ALICE"; return nil }); err != nil || u.Name != "ALICE" {
		t.Fatalf("case-only rename = %+v, %v", u, err)
	}
	if _, err := b.UpdateUser("u1", func(u *storage.User) error { u.Name = "  "; return nil }); err == nil {
		t.Fatal("an empty name was accepted")
	}
	if _, err := b.UpdateUser("u1", func(u *storage.User) error { u.ID = "u9"; return nil }); err == nil {
		t.Fatal("changing the id was accepted")
	}
	fnErr := errors.New("refused by fn")
	if _, err := b.UpdateUser("u1", func(*storage.User) error { return fnErr }); !errors.Is(err, fnErr) {
		t.Fatalf("fn error not returned: %v", err)
	}
	if _, err := b.UpdateUser("missing", func(*storage.User) error { return nil }); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("update of missing user: err = %v, want ErrNotFound", err)
	}
}

func TestDeleteUserRemovesEverything(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	u := newUser("u1", "Alice")
	u.DeviceKID = "dev-1"
	dev := &storage.Device{KID: "dev-1", UserID: "u1", JWK: []byte(`{}`), CreatedAt: t0}
	mustCreate(t, b, u, newSession("s1", "u1"), dev)
	if err := b.PutSession(newSession("s2", "u1")); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, b, newUser("u2", "Bob"), newSession("s3", "u2"), nil)

	// While u1 owns it, the device key cannot be bound to someone else.
	d2 := &storage.Device{KID: "dev-1", UserID: "u4", JWK: []byte(`{}`), CreatedAt: t0}
	if err := b.CreateUser(newUser("u4", "Dan"), nil, d2); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("device bound twice: err = %v, want ErrExists", err)
	}

	if err := b.DeleteUser("u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetUser("u1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("user still there: %v", err)
	}
	if _, err := b.GetUserByName("alice"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("name still indexed: %v", err)
	}
	for _, sid := range []string{"s1", "s2"} {
		if _, err := b.GetSession(sid); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("session %s survived its user: %v", sid, err)
		}
	}
	if _, err := b.GetSession("s3"); err != nil {
		t.Fatalf("another user's session was deleted: %v", err)
	}
	// Name and device key are free again.
	mustCreate(t, b, newUser("u4", "alice"), nil, d2)
	if err := b.DeleteUser("u1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second delete: err = %v, want ErrNotFound", err)
	}
}

func TestIdentity(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("u1", "Alice"), newSession("s1", "u1"), nil)
	mustCreate(t, b, newUser("u2", "Bob"), newSession("s2", "u2"), nil)

	u, s, err := b.Identity("u1", "s1")
	if err != nil || u.ID != "u1" || u.Name != "Alice" || s.ID != "s1" || s.UserID != "u1" {
		t.Fatalf("Identity = %+v, %+v, %v", u, s, err)
	}
	for _, c := range [][2]string{{"u1", "s2"}, {"u1", "nope"}, {"nope", "s1"}} {
		if _, _, err := b.Identity(c[0], c[1]); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("Identity(%s, %s) err = %v, want ErrNotFound", c[0], c[1], err)
		}
	}
}

func TestSessionUpdateAndDelete(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	mustCreate(t, b, newUser("u1", "Alice"), newSession("s1", "u1"), nil)
	for _, sid := range []string{"s2", "s3", "s4"} {
		if err := b.PutSession(newSession(sid, "u1")); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(t, b, newUser("u2", "Bob"), newSession("t1", "u2"), nil)

	later := t0.Add(time.Minute)
	s, err := b.UpdateSession("s1", func(s *storage.Session) error {
		s.Generation++
		s.LastUsedAt = later
		return nil
	})
	if err != nil || s.Generation != 2 {
		t.Fatalf("UpdateSession = %+v, %v", s, err)
	}
	if s, _ := b.GetSession("s1"); s.Generation != 2 || !s.LastUsedAt.Equal(later) {
		t.Fatalf("update not persisted: %+v", s)
	}
	if _, err := b.UpdateSession("s1", func(s *storage.Session) error { s.ID = "zz"; return nil }); err == nil {
		t.Fatal("changing a session id was accepted")
	}
	if _, err := b.UpdateSession("missing", func(*storage.Session) error { return nil }); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("update of missing session: err = %v, want ErrNotFound", err)
	}

	if err := b.DeleteSession("s2"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetSession("s2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("deleted session still there: %v", err)
	}
	if err := b.DeleteSession("s2"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("second delete: err = %v, want ErrNotFound", err)
	}

	// s2 is already gone, so only s3 and s4 are ended; s1 is kept.
	n, err := b.DeleteUserSessions("u1", "s1")
	if err != nil || n != 2 {
		t.Fatalf("DeleteUserSessions = %d, %v; want 2", n, err)
	}
	for sid, want := range map[string]bool{"s1": true, "s3": false, "s4": false, "t1": true} {
		_, err := b.GetSession(sid)
		if got := err == nil; got != want {
			t.Fatalf("session %s exists = %v, want %v (%v)", sid, got, want, err)
		}
	}
	if n, err := b.DeleteUserSessions("u1", ""); err != nil || n != 1 {
		t.Fatalf("DeleteUserSessions(all) = %d, %v; want 1", n, err)
	}
	if _, _, err := b.Identity("u1", "s1"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Identity after ending all sessions: %v", err)
	}
}

func TestSigningKeysPersistAcrossReopen(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	newer := storage.SigningKey{KID: "k2", Alg: "ES256", CreatedAt: t0.Add(time.Hour), JWK: []byte(`{"kty":"EC"}`)}
	older := storage.SigningKey{KID: "k1", Alg: "RS256", CreatedAt: t0, JWK: []byte(`{"kty":"RSA"}`)}
	for _, k := range []storage.SigningKey{newer, older} {
		if err := b.AddSigningKey(k); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.AddSigningKey(older); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("duplicate kid: err = %v, want ErrExists", err)
	}
	mustCreate(t, b, newUser("u1", "Alice"), newSession("s1", "u1"), nil)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2, err := storage.OpenBolt(path, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	keys, err := b2.SigningKeys()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].KID != "k1" || keys[1].KID != "k2" {
		t.Fatalf("keys after reopen (want k1, k2 oldest first): %+v", keys)
	}
	if keys[0].Alg != "RS256" || string(keys[0].JWK) != `{"kty":"RSA"}` || !keys[1].CreatedAt.Equal(newer.CreatedAt) {
		t.Fatalf("key contents changed: %+v", keys)
	}
	if _, _, err := b2.Identity("u1", "s1"); err != nil {
		t.Fatalf("user and session after reopen: %v", err)
	}
}

func TestSecondOpenFailsWithinLockTimeout(t *testing.T) {
	t.Parallel()
	_, path := openTemp(t)
	const timeout = 300 * time.Millisecond
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		b, err := storage.OpenBolt(path, storage.Options{LockTimeout: timeout})
		if err == nil {
			b.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a second OpenBolt on a locked file succeeded")
		}
		if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), path) {
			t.Fatalf("error does not say the file is locked: %v", err)
		}
		// bbolt polls the lock, so it may give up a poll interval early.
		if elapsed := time.Since(start); elapsed < timeout/2 || elapsed > timeout+2*time.Second {
			t.Fatalf("second open failed after %v, want about %v", elapsed, timeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second OpenBolt hangs on a locked file")
	}
}

func TestSchemaVersionChecked(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	b.Close()

	// Reopening a file of the current schema works.
	b2, err := storage.OpenBolt(path, storage.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	b2.Close()

	// Pretend a newer build wrote the file.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if meta == nil || meta.Get([]byte("schema")) == nil {
			return errors.New("OpenBolt did not record a schema version")
		}
		return meta.Put([]byte("schema"), []byte("999"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	b3, err := storage.OpenBolt(path, storage.Options{})
	if err == nil {
		b3.Close()
		t.Fatal("a file of an unknown schema version was opened")
	}
	if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), "999") {
		t.Fatalf("error does not name the schema version: %v", err)
	}
	// The refused open released the file.
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("file still locked after a refused open: %v", err)
	}
	db.Close()
}

func TestNameKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"Alice": "alice", "  BoB ": "bob", "guest_ABC": "guest_abc"} {
		if got := storage.NameKey(in); got != want {
			t.Fatalf("NameKey(%q) = %q, want %q", in, got, want)
		}
	}
}

package bolt_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
	"github.com/guestauth/caddy-guestauth/storage/storagetest"
)

func openTemp(t *testing.T) (*bolt.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "store.db")
	b, err := bolt.Open(path, bolt.Options{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, path
}

var t0 = storagetest.T0

// The bbolt backend passes the conformance suite.
func TestBoltConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, _ := openTemp(t)
		return b
	})
}

// Open picks the backend by kind; bolt is the default.
func TestOpenByKind(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"", storage.KindBolt} {
		path := filepath.Join(t.TempDir(), "k.db")
		st, err := storage.Open(bg, storage.Config{Kind: kind, Location: path})
		if err != nil {
			t.Fatalf("kind %q: %v", kind, err)
		}
		if _, ok := st.(*bolt.Store); !ok || st.Describe() != path {
			t.Fatalf("kind %q opened %T at %s", kind, st, st.Describe())
		}
		st.Close()
	}
	if _, err := storage.Open(bg, storage.Config{Kind: "postgres", Location: "x"}); err == nil || !strings.Contains(err.Error(), `unknown storage kind "postgres"`) || !strings.Contains(err.Error(), "bolt") {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := storage.Open(bg, storage.Config{Kind: storage.KindBolt}); err == nil {
		t.Fatal("a bolt store without a path was opened")
	}
	// Options of the backend's own type, or none; another type is refused.
	path := filepath.Join(t.TempDir(), "o.db")
	st, err := storage.Open(bg, storage.Config{Location: path, Options: bolt.Options{IdentityCacheSize: -1}})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := storage.Open(bg, storage.Config{Location: path, Options: struct{}{}}); err == nil || !strings.Contains(err.Error(), "options of type") {
		t.Fatalf("foreign options: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("registering bolt twice did not panic")
		}
	}()
	storage.Register(storage.KindBolt, func(context.Context, storage.Config) (storage.Backend, error) { return nil, nil })
}

var (
	bg         = context.Background()
	newUser    = storagetest.NewUser
	newSession = storagetest.NewSession
)

func mustCreate(t *testing.T, b *bolt.Store, u *model.User, s *model.Session, d *model.Device) {
	t.Helper()
	if err := b.CreateUser(bg, u, s, d, nil); err != nil {
		t.Fatalf("CreateUser(%s): %v", u.ID, err)
	}
}

func TestSigningKeysPersistAcrossReopen(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	newer := model.SigningKey{KID: "k2", Alg: "ES256", CreatedAt: t0.Add(time.Hour), JWK: []byte(`{"kty":"EC"}`)}
	older := model.SigningKey{KID: "k1", Alg: "RS256", CreatedAt: t0, JWK: []byte(`{"kty":"RSA"}`)}
	for _, k := range []model.SigningKey{newer, older} {
		if err := b.AddSigningKey(bg, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.AddSigningKey(bg, older); !errors.Is(err, model.ErrExists) {
		t.Fatalf("duplicate kid: err = %v, want ErrExists", err)
	}
	mustCreate(t, b, newUser("u1", "Alice"), newSession("s1", "u1"), nil)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	keys, err := b2.SigningKeys(bg)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].KID != "k1" || keys[1].KID != "k2" {
		t.Fatalf("keys after reopen (want k1, k2 oldest first): %+v", keys)
	}
	if keys[0].Alg != "RS256" || string(keys[0].JWK) != `{"kty":"RSA"}` || !keys[1].CreatedAt.Equal(newer.CreatedAt) {
		t.Fatalf("key contents changed: %+v", keys)
	}
	if _, _, err := b2.Identity(bg, "u1", "s1"); err != nil {
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
		b, err := bolt.Open(path, bolt.Options{LockTimeout: timeout})
		if err == nil {
			b.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a second Open on a locked file succeeded")
		}
		if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), path) {
			t.Fatalf("error does not say the file is locked: %v", err)
		}
		// bbolt polls the lock, so it may give up a poll interval early.
		if elapsed := time.Since(start); elapsed < timeout/2 || elapsed > timeout+2*time.Second {
			t.Fatalf("second open failed after %v, want about %v", elapsed, timeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second Open hangs on a locked file")
	}
}

func TestSchemaVersionChecked(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	b.Close()

	// Reopening a file of the current schema works.
	b2, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	b2.Close()

	// Pretend a newer build wrote the file.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if meta == nil || meta.Get([]byte("schema")) == nil {
			return errors.New("Open did not record a schema version")
		}
		return meta.Put([]byte("schema"), []byte("999"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	b3, err := bolt.Open(path, bolt.Options{})
	if err == nil {
		b3.Close()
		t.Fatal("a file of an unknown schema version was opened")
	}
	if !strings.Contains(err.Error(), "schema") || !strings.Contains(err.Error(), "999") {
		t.Fatalf("error does not name the schema version: %v", err)
	}
	// The refused open released the file.
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatalf("file still locked after a refused open: %v", err)
	}
	db.Close()
}

func TestNameKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"Alice": "alice", "  BoB ": "bob", "guest_ABC": "guest_abc"} {
		if got := model.NameKey(in); got != want {
			t.Fatalf("NameKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// Package bolt is a storage.Backend on one embedded bbolt file, for one
// Caddy process (bbolt locks the file): the default store, needing no
// other process. It registers the storage kind "bolt"; its location is the
// file's path.
//
// Every write is one bbolt transaction, and concurrent writes share one
// fsync'd commit (groupCommit); the records are JSON (read with
// storage.DecodeRecord), the indexes are buckets keyed for the queries
// (names, a user's sessions, sessions by end, guests by activity,
// orphans), and the counters live in the meta bucket. The webhook outbox,
// the shared limits and the signing keys are buckets of the same file, so
// an event is stored in the transaction of the write it reports. The
// locks (LockSigningKeys, TryLockSweep) are this process's own: no other
// process can open the file.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

var (
	bucketUsers        = []byte("users")         // user id -> model.User JSON
	bucketNames        = []byte("names")         // model.NameKey(name) -> user id
	bucketEmails       = []byte("emails")        // User.VerifiedEmailKey() -> user id
	bucketSessions     = []byte("sessions")      // session id -> model.Session JSON
	bucketUserSessions = []byte("user_sessions") // user id + "/" + session id -> ""
	bucketKeys         = []byte("keys")          // kid -> model.SigningKey JSON
	bucketDevices      = []byte("devices")       // device kid -> model.Device JSON
	bucketSessionEnds  = []byte("session_ends")  // EndsAt (8-byte big-endian unix ns) + session id -> ""
	bucketMeta         = []byte("meta")

	allBuckets = [][]byte{bucketUsers, bucketNames, bucketEmails, bucketSessions, bucketUserSessions, bucketSessionEnds, bucketKeys, bucketDevices, bucketMeta,
		bucketGuestIdle, bucketOrphans, bucketOutbox, bucketOutboxIDs, bucketLimits, bucketLimitTATs,
		bucketPasskeys, bucketUserPasskeys, bucketDaily, bucketIdleHours}
)

// schemaVersion is written to the meta bucket; a file from a newer version is
// refused rather than misread.
const schemaVersion = "1"

// Options tune Open.
type Options struct {
	// LockTimeout bounds the wait for bbolt's exclusive file lock, so a second
	// process on the same file fails with a clear error instead of hanging.
	LockTimeout time.Duration
	// MaxBatchDelay bounds how long a write that finds no commit running
	// waits for as many others as shared the previous commit, so they
	// share one fsync (default 1ms; see groupCommit). A write after a
	// commit of one does not wait.
	MaxBatchDelay time.Duration
	// Now is the clock used to stamp orphaned guests (time.Now when nil).
	Now func() time.Time
	// IdentityCacheSize bounds the decoded users and sessions kept for
	// Identity (default storage.DefaultIdentityCacheSize, 100 000 at about 0.9 KiB
	// each; negative disables the cache).
	IdentityCacheSize int
}

// Store is a storage.Backend on one bbolt file, for one process: bbolt
// locks the file, so no other process can write it while it is open. Its
// locks (LockSigningKeys, TryLockSweep) are therefore this process's own.
type Store struct {
	db  *bbolt.DB
	now func() time.Time
	// commits counts committed write transactions (a batch shared by many
	// callers is one); counted is the write transaction whose commit is
	// already hooked, touched only inside write transactions, which bbolt
	// runs one at a time.
	commits atomic.Uint64
	counted *bbolt.Tx
	cache   *storage.IdentityCache
	group   *groupCommit
	locks   locks
}

var _ storage.Backend = (*Store)(nil)

// countCommit makes the commit of tx, once, count in commits, and fills
// the pages of the time-ordered buckets (see appendBuckets).
func (b *Store) countCommit(tx *bbolt.Tx) {
	if b.counted != tx {
		b.counted = tx
		tx.OnCommit(func() { b.commits.Add(1) })
		for _, name := range appendBuckets {
			if bk := tx.Bucket(name); bk != nil {
				bk.FillPercent = appendFill
			}
		}
	}
}

// appendBuckets are keyed by UUIDv7 ids or by time, so new records go at
// their end. bbolt splits a page at half its size by default, which for
// appends leaves every page half empty: filled to appendFill, the store
// takes fewer pages per guest, and a commit splits (and writes) fewer.
var appendBuckets = [][]byte{bucketUsers, bucketNames, bucketSessions, bucketUserSessions, bucketSessionEnds, bucketGuestIdle}

const appendFill = 0.9

// view and update refuse to start a transaction for a cancelled context
// (storage.CtxErr). A bbolt transaction is local and short, so once started
// it runs to its end.
func (b *Store) view(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := storage.CtxErr(ctx); err != nil {
		return err
	}
	return b.db.View(fn)
}

func (b *Store) update(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := storage.CtxErr(ctx); err != nil {
		return err
	}
	b.cache.WriteBegin()
	defer b.cache.WriteEnd()
	return b.db.Update(func(tx *bbolt.Tx) error {
		b.countCommit(tx)
		return fn(tx)
	})
}

// batch shares one commit between concurrent callers (see groupCommit).
// fn may run a second time (after rolling back a commit that another
// caller's function failed), so fn must give the same result when run again
// on the same data; the exported methods see to it, and their callers need
// not care.
func (b *Store) batch(ctx context.Context, fn func(*bbolt.Tx) error) error {
	if err := storage.CtxErr(ctx); err != nil {
		return err
	}
	b.cache.WriteBegin()
	defer b.cache.WriteEnd()
	return b.group.do(func(tx *bbolt.Tx) error {
		b.countCommit(tx)
		return fn(tx)
	})
}

func init() {
	storage.Register(storage.KindBolt, func(_ context.Context, cfg storage.Config) (storage.Backend, error) {
		if cfg.Location == "" {
			return nil, errors.New("bolt storage needs a file path")
		}
		opt, ok := cfg.Options.(Options)
		if !ok && cfg.Options != nil {
			return nil, fmt.Errorf("bolt storage: options of type %T", cfg.Options)
		}
		return Open(cfg.Location, opt)
	})
}

// Open opens (creating if needed) the bbolt file at path.
func Open(path string, opt Options) (*Store, error) {
	if opt.LockTimeout <= 0 {
		opt.LockTimeout = 2 * time.Second
	}
	if opt.MaxBatchDelay <= 0 {
		opt.MaxBatchDelay = time.Millisecond
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating storage directory: %w", err)
	}
	// The free-page list is not written at each commit (NoFreelistSync):
	// bbolt rebuilds it from the page tree when it opens the file. With a
	// large store and many free pages, writing the sorted list made every
	// commit, so every guest creation, cost time in proportion to the free
	// pages. Commits are still fsync'd before they return.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opt.LockTimeout, FreelistType: bbolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: the file is locked by another process (is another Caddy using it?): %w", path, err)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get([]byte("schema")); {
		case v == nil:
			if err := meta.Put(keyIdleHours, []byte{1}); err != nil {
				return err
			}
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("unsupported schema version %q (this build reads %q)", v, schemaVersion)
		}
		if err := releaseLeases(tx); err != nil {
			return err
		}
		if err := buildIdleHours(tx); err != nil {
			return err
		}
		return checkCounts(tx)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initializing %s: %w", path, err)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.IdentityCacheSize == 0 {
		opt.IdentityCacheSize = storage.DefaultIdentityCacheSize
	}
	return &Store{db: db, now: opt.Now, cache: storage.NewIdentityCache(opt.IdentityCacheSize), group: newGroupCommit(db, opt.MaxBatchDelay), locks: newLocks()}, nil
}

// Close marks the record counters as exact (see checkCounts) and closes
// the file.
func (b *Store) Close() error {
	// A failed mark only costs a recount at the next open.
	err := b.db.Update(func(tx *bbolt.Tx) error { return markCounts(tx) })
	return errors.Join(err, b.db.Close())
}

// Path is the file's path.
func (b *Store) Path() string { return b.db.Path() }

// Describe implements storage.Backend: the file's path.
func (b *Store) Describe() string { return b.db.Path() }

// Shared implements storage.Backend: no other process can use the file.
func (b *Store) Shared() bool { return false }

// IdentityCache implements storage.Backend. Every write of this process invalidates
// the records it touches; nothing else writes the file while it is open.
func (b *Store) IdentityCache() *storage.IdentityCache { return b.cache }

// getJSON reads the record under key (storage.DecodeRecord).
func getJSON(bk *bbolt.Bucket, key string, v any) error {
	raw := bk.Get([]byte(key))
	if raw == nil {
		return model.ErrNotFound
	}
	return storage.DecodeRecord(raw, v)
}

func putJSON(bk *bbolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return bk.Put([]byte(key), raw)
}

func userSessionKey(userID, sessionID string) []byte {
	return []byte(userID + "/" + sessionID)
}

// CreateUser implements storage.Backend. It runs in a shared batch commit; a rerun
// of the function by bbolt starts from the rolled-back state, so the checks
// below see the store as it was.
func (b *Store) CreateUser(ctx context.Context, u *model.User, s *model.Session, dev *model.Device, ev storage.Events) error {
	if u.ID == "" || u.Name == "" {
		return errors.New("user needs an id and a name")
	}
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		if err := b.createUser(tx, u, s, dev); err != nil {
			return err
		}
		return storeEvents(tx, ev, storage.TxResult{Created: []model.User{*u}})
	})
}

func (b *Store) createUser(tx *bbolt.Tx, u *model.User, s *model.Session, dev *model.Device) error {
	users, names := tx.Bucket(bucketUsers), tx.Bucket(bucketNames)
	if users.Get([]byte(u.ID)) != nil {
		return fmt.Errorf("user %s: %w", u.ID, model.ErrExists)
	}
	nk := []byte(model.NameKey(u.Name))
	if names.Get(nk) != nil {
		return model.ErrNameTaken
	}
	if dev != nil {
		if tx.Bucket(bucketDevices).Get([]byte(dev.KID)) != nil {
			return fmt.Errorf("device %s: %w", dev.KID, model.ErrExists)
		}
		if err := putJSON(tx.Bucket(bucketDevices), dev.KID, dev); err != nil {
			return err
		}
	}
	if err := b.saveUser(tx, nil, u); err != nil {
		return err
	}
	if err := names.Put(nk, []byte(u.ID)); err != nil {
		return err
	}
	switch {
	case s == nil:
		return nil
	case s.UserID != u.ID:
		return errors.New("the first session must be the new user's")
	case u.OrphanedAt.IsZero():
		return b.putNewSession(tx, s)
	default:
		return b.putSession(tx, s)
	}
}

// putNewSession stores the first session of a user just saved without an
// orphan mark: no previous version to replace, no user to re-read.
func (b *Store) putNewSession(tx *bbolt.Tx, s *model.Session) error {
	if s.ID == "" {
		return errors.New("session needs an id and a user id")
	}
	sessions := tx.Bucket(bucketSessions)
	if sessions.Get([]byte(s.ID)) != nil {
		return fmt.Errorf("session %s: %w", s.ID, model.ErrExists)
	}
	b.cache.InvalidateSession(s.ID)
	if err := putJSON(sessions, s.ID, s); err != nil {
		return err
	}
	if err := counter(tx.Bucket(bucketMeta), keySessions, 1); err != nil {
		return err
	}
	if err := tx.Bucket(bucketSessionEnds).Put(sessionEndKey(s), nil); err != nil {
		return err
	}
	return tx.Bucket(bucketUserSessions).Put(userSessionKey(s.UserID, s.ID), nil)
}

func sessionEndKey(s *model.Session) []byte {
	k := make([]byte, 8, 8+len(s.ID))
	binary.BigEndian.PutUint64(k, uint64(max(s.EndsAt().UnixNano(), 0)))
	return append(k, s.ID...)
}

// putSession writes s with its index entries, replacing a previous version,
// and clears the owner's orphan mark.
func (b *Store) putSession(tx *bbolt.Tx, s *model.Session) error {
	if s.ID == "" || s.UserID == "" {
		return errors.New("session needs an id and a user id")
	}
	b.cache.InvalidateSession(s.ID)
	sessions, ends := tx.Bucket(bucketSessions), tx.Bucket(bucketSessionEnds)
	var prev model.Session
	if err := getJSON(sessions, s.ID, &prev); err == nil {
		if prev.UserID != s.UserID {
			return errors.New("a session's user cannot change")
		}
		if err := ends.Delete(sessionEndKey(&prev)); err != nil {
			return err
		}
	} else if !errors.Is(err, model.ErrNotFound) {
		return err
	} else if err := counter(tx.Bucket(bucketMeta), keySessions, 1); err != nil {
		return err
	}
	if err := putJSON(sessions, s.ID, s); err != nil {
		return err
	}
	if err := ends.Put(sessionEndKey(s), nil); err != nil {
		return err
	}
	if err := tx.Bucket(bucketUserSessions).Put(userSessionKey(s.UserID, s.ID), nil); err != nil {
		return err
	}
	var u model.User
	if err := getJSON(tx.Bucket(bucketUsers), s.UserID, &u); err != nil {
		return err
	}
	if !u.OrphanedAt.IsZero() {
		old := u
		u.OrphanedAt = time.Time{}
		return b.saveUser(tx, &old, &u)
	}
	return nil
}

// deleteSession removes s and its index entries; the caller then calls
// markOrphan for its user.
func (b *Store) deleteSession(tx *bbolt.Tx, s *model.Session) error {
	b.cache.InvalidateSession(s.ID)
	if err := tx.Bucket(bucketSessionEnds).Delete(sessionEndKey(s)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketUserSessions).Delete(userSessionKey(s.UserID, s.ID)); err != nil {
		return err
	}
	if err := counter(tx.Bucket(bucketMeta), keySessions, -1); err != nil {
		return err
	}
	return tx.Bucket(bucketSessions).Delete([]byte(s.ID))
}

// markOrphan stamps an ephemeral user (see User.Ephemeral) that has no
// session left.
func (b *Store) markOrphan(tx *bbolt.Tx, userID string, now time.Time) error {
	users := tx.Bucket(bucketUsers)
	var u model.User
	if err := getJSON(users, userID, &u); err != nil {
		if errors.Is(err, model.ErrNotFound) {
			return nil
		}
		return err
	}
	if !u.Ephemeral() || !u.OrphanedAt.IsZero() {
		return nil
	}
	prefix := []byte(userID + "/")
	if k, _ := tx.Bucket(bucketUserSessions).Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
		return nil
	}
	old := u
	u.OrphanedAt = now.UTC()
	return b.saveUser(tx, &old, &u)
}

// GetUser implements storage.Backend.
func (b *Store) GetUser(ctx context.Context, id string) (*model.User, error) {
	var u model.User
	err := b.view(ctx, func(tx *bbolt.Tx) error { return getJSON(tx.Bucket(bucketUsers), id, &u) })
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// GetUserByName implements storage.Backend; name is matched case-insensitively.
func (b *Store) GetUserByName(ctx context.Context, name string) (*model.User, error) {
	var u model.User
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		id := tx.Bucket(bucketNames).Get([]byte(model.NameKey(name)))
		if id == nil {
			return model.ErrNotFound
		}
		return getJSON(tx.Bucket(bucketUsers), string(id), &u)
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// FindUsersByName implements storage.Backend.
func (b *Store) FindUsersByName(ctx context.Context, prefix string, limit int) ([]model.User, error) {
	key := []byte(model.NameKey(prefix))
	var out []model.User
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		out = nil
		users := tx.Bucket(bucketUsers)
		c := tx.Bucket(bucketNames).Cursor()
		for k, id := c.Seek(key); k != nil && bytes.HasPrefix(k, key) && len(out) < limit; k, id = c.Next() {
			var u model.User
			if err := getJSON(users, string(id), &u); err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	return out, err
}

// GetUserByEmail implements storage.Backend.
func (b *Store) GetUserByEmail(ctx context.Context, email string) (*model.User, error) {
	key := model.EmailKey(email)
	if key == "" {
		return nil, model.ErrNotFound
	}
	var u model.User
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		id := tx.Bucket(bucketEmails).Get([]byte(key))
		if id == nil {
			return model.ErrNotFound
		}
		return getJSON(tx.Bucket(bucketUsers), string(id), &u)
	})
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// UpdateUser implements storage.Backend.
func (b *Store) UpdateUser(ctx context.Context, id string, fn func(u *model.User) error, ev storage.Events) (*model.User, error) {
	var out *model.User
	var memo memo[model.User]
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		u, err := b.updateUser(tx, id, &memo, fn)
		if err != nil {
			return err
		}
		out = u
		return storeEvents(tx, ev, storage.TxResult{})
	})
	return out, err
}

// updateUser applies fn (through m, once per stored version) to the
// stored user id and saves it, moving its name index entry.
func (b *Store) updateUser(tx *bbolt.Tx, id string, m *memo[model.User], fn func(u *model.User) error) (*model.User, error) {
	users, names := tx.Bucket(bucketUsers), tx.Bucket(bucketNames)
	raw := users.Get([]byte(id))
	if raw == nil {
		return nil, model.ErrNotFound
	}
	var old model.User
	if err := storage.DecodeRecord(raw, &old); err != nil {
		return nil, err
	}
	oldKey := model.NameKey(old.Name)
	u, err := m.apply(raw, old, fn)
	if err != nil {
		return nil, err
	}
	if u.ID != id {
		return nil, errors.New("a user's id cannot change")
	}
	if newKey := model.NameKey(u.Name); newKey != oldKey {
		if newKey == "" {
			return nil, errors.New("a user's name cannot be empty")
		}
		if owner := names.Get([]byte(newKey)); owner != nil && string(owner) != id {
			return nil, model.ErrNameTaken
		}
		if err := names.Delete([]byte(oldKey)); err != nil {
			return nil, err
		}
		if err := names.Put([]byte(newKey), []byte(id)); err != nil {
			return nil, err
		}
	}
	if err := b.saveUser(tx, &old, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// DeleteUser implements storage.Backend: the user, its name, sessions, devices, passkeys and identity links.
func (b *Store) DeleteUser(ctx context.Context, id string, ev storage.Events) error {
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		var u model.User
		if err := getJSON(tx.Bucket(bucketUsers), id, &u); err != nil {
			return err
		}
		if err := b.deleteUser(tx, &u); err != nil {
			return err
		}
		return storeEvents(tx, ev, storage.TxResult{Deleted: []model.User{u}})
	})
}

func (b *Store) deleteUser(tx *bbolt.Tx, u *model.User) error {
	if _, err := b.deleteUserSessions(tx, u.ID, ""); err != nil {
		return err
	}
	if err := deleteUserLinks(tx, u.ID); err != nil {
		return err
	}
	if u.DeviceKID != "" {
		if err := tx.Bucket(bucketDevices).Delete([]byte(u.DeviceKID)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketNames).Delete([]byte(model.NameKey(u.Name))); err != nil {
		return err
	}
	if err := deleteUserPasskeys(tx, u.ID); err != nil {
		return err
	}
	return b.saveUser(tx, u, nil)
}

// Identity implements storage.Backend. It is served from a cache of decoded records
// when it can be (see identityCache): the returned values are shared and
// must not be modified.
func (b *Store) Identity(ctx context.Context, userID, sessionID string) (*model.User, *model.Session, error) {
	if err := storage.CtxErr(ctx); err != nil {
		return nil, nil, err
	}
	if u, s, ok := b.cache.Get(userID, sessionID); ok {
		return u, s, nil
	}
	before := b.cache.Snapshot()
	var u model.User
	var s model.Session
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		// The session first: it names its user, so a mismatch costs no
		// user decode.
		raw := tx.Bucket(bucketSessions).Get([]byte(sessionID))
		if raw == nil {
			return model.ErrNotFound
		}
		if err := storage.DecodeRecord(raw, &s); err != nil {
			return err
		}
		if s.UserID != userID {
			return model.ErrNotFound
		}
		if raw = tx.Bucket(bucketUsers).Get([]byte(userID)); raw == nil {
			return model.ErrNotFound
		}
		if err := storage.DecodeRecord(raw, &u); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	b.cache.Put(before, &u, &s)
	return &u, &s, nil
}

// GetSession implements storage.Backend.
func (b *Store) GetSession(ctx context.Context, id string) (*model.Session, error) {
	var s model.Session
	err := b.view(ctx, func(tx *bbolt.Tx) error { return getJSON(tx.Bucket(bucketSessions), id, &s) })
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// UpdateSession implements storage.Backend.
func (b *Store) UpdateSession(ctx context.Context, id string, fn func(s *model.Session) error, ev storage.Events) (*model.Session, error) {
	var out *model.Session
	var memo memo[model.Session]
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketSessions).Get([]byte(id))
		if raw == nil {
			return model.ErrNotFound
		}
		var cur model.Session
		if err := storage.DecodeRecord(raw, &cur); err != nil {
			return err
		}
		s, err := memo.apply(raw, cur, fn)
		if err != nil {
			return err
		}
		if s.ID != id {
			return errors.New("a session's id cannot change")
		}
		if err := b.putSession(tx, &s); err != nil {
			return err
		}
		out = &s
		return storeEvents(tx, ev, storage.TxResult{})
	})
	return out, err
}

// PutSession implements storage.Backend; the user must exist.
func (b *Store) PutSession(ctx context.Context, s *model.Session) error {
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(s.UserID)) == nil {
			return model.ErrNotFound
		}
		return b.putSession(tx, s)
	})
}

// PutSessionLimit implements storage.Backend: one write transaction stores s and
// ends the user's oldest other sessions beyond keep.
func (b *Store) PutSessionLimit(ctx context.Context, s *model.Session, keep int) (int, error) {
	var ended int
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		var err error
		ended, err = b.putSessionLimit(tx, s, keep) // a batched function may run twice: ended is set anew
		return err
	})
	return ended, err
}

// putSessionLimit is PutSessionLimit in tx.
func (b *Store) putSessionLimit(tx *bbolt.Tx, s *model.Session, keep int) (int, error) {
	if tx.Bucket(bucketUsers).Get([]byte(s.UserID)) == nil {
		return 0, model.ErrNotFound
	}
	if err := b.putSession(tx, s); err != nil {
		return 0, err
	}
	if keep <= 0 {
		return 0, nil
	}
	prefix := []byte(s.UserID + "/")
	var others []model.Session
	c := tx.Bucket(bucketUserSessions).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		sid := string(k[len(prefix):])
		if sid == s.ID {
			continue
		}
		var o model.Session
		if err := getJSON(tx.Bucket(bucketSessions), sid, &o); err != nil {
			return 0, err
		}
		others = append(others, o)
	}
	excess := len(others) + 1 - keep
	if excess <= 0 {
		return 0, nil
	}
	slices.SortFunc(others, func(x, y model.Session) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	for i := range others[:excess] {
		if err := b.deleteSession(tx, &others[i]); err != nil {
			return 0, err
		}
	}
	return excess, nil
}

// DeleteSession implements storage.Backend.
func (b *Store) DeleteSession(ctx context.Context, id string, ev storage.Events) error {
	now := b.now()
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		var s model.Session
		if err := getJSON(tx.Bucket(bucketSessions), id, &s); err != nil {
			return err
		}
		if err := b.deleteSession(tx, &s); err != nil {
			return err
		}
		if err := b.markOrphan(tx, s.UserID, now); err != nil {
			return err
		}
		return storeEvents(tx, ev, storage.TxResult{Ended: 1})
	})
}

// DeleteUserSessions implements storage.Backend.
func (b *Store) DeleteUserSessions(ctx context.Context, userID, keep string, ev storage.Events) (int, error) {
	now := b.now()
	var n int
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		var err error
		if n, err = b.deleteUserSessions(tx, userID, keep); err != nil {
			return err
		}
		if err := b.markOrphan(tx, userID, now); err != nil {
			return err
		}
		return storeEvents(tx, ev, storage.TxResult{Ended: n})
	})
	return n, err
}

func (b *Store) deleteUserSessions(tx *bbolt.Tx, userID, keep string) (int, error) {
	prefix := []byte(userID + "/")
	var ids []string
	c := tx.Bucket(bucketUserSessions).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		if sid := string(k[len(prefix):]); sid != keep {
			ids = append(ids, sid)
		}
	}
	for _, sid := range ids {
		var s model.Session
		if err := getJSON(tx.Bucket(bucketSessions), sid, &s); err != nil {
			return 0, err
		}
		if err := b.deleteSession(tx, &s); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// DeleteEndedSessions implements storage.Backend. It reads the end-time index, so its
// cost depends on how many sessions ended, not on how many exist.
func (b *Store) DeleteEndedSessions(ctx context.Context, now time.Time, limit int) (int, error) {
	var n int
	err := b.update(ctx, func(tx *bbolt.Tx) error {
		n = 0
		var ended []model.Session
		c := tx.Bucket(bucketSessionEnds).Cursor()
		for k, _ := c.First(); k != nil && len(ended) < limit; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k[:8])) > now.UnixNano() {
				break
			}
			var s model.Session
			if err := getJSON(tx.Bucket(bucketSessions), string(k[8:]), &s); err != nil {
				return fmt.Errorf("session index entry %x: %w", k, err)
			}
			ended = append(ended, s)
		}
		users := map[string]bool{}
		for i := range ended {
			if err := b.deleteSession(tx, &ended[i]); err != nil {
				return err
			}
			users[ended[i].UserID] = true
		}
		for id := range users {
			if err := b.markOrphan(tx, id, now); err != nil {
				return err
			}
		}
		n = len(ended)
		return nil
	})
	return n, err
}

// SigningKeys implements storage.Backend, oldest first.
func (b *Store) SigningKeys(ctx context.Context) ([]model.SigningKey, error) {
	var keys []model.SigningKey
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
			var k model.SigningKey
			if err := storage.DecodeRecord(v, &k); err != nil {
				return err
			}
			keys = append(keys, k)
			return nil
		})
	})
	slices.SortFunc(keys, func(a, b model.SigningKey) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return keys, err
}

// AddSigningKey implements storage.Backend.
func (b *Store) AddSigningKey(ctx context.Context, k model.SigningKey) error {
	return b.update(ctx, func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketKeys)
		if bk.Get([]byte(k.KID)) != nil {
			return fmt.Errorf("signing key %s: %w", k.KID, model.ErrExists)
		}
		return putJSON(bk, k.KID, k)
	})
}

// SetSigningKeyCert implements storage.Backend.
func (b *Store) SetSigningKeyCert(ctx context.Context, kid string, cert []byte) error {
	return b.update(ctx, func(tx *bbolt.Tx) error {
		bk := tx.Bucket(bucketKeys)
		var k model.SigningKey
		if err := getJSON(bk, kid, &k); err != nil {
			return err
		}
		if len(k.Cert) > 0 {
			return fmt.Errorf("certificate of signing key %s: %w", kid, model.ErrExists)
		}
		k.Cert = cert
		return putJSON(bk, kid, k)
	})
}

// DeleteSigningKey implements storage.Backend.
func (b *Store) DeleteSigningKey(ctx context.Context, kid string) error {
	return b.update(ctx, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketKeys).Delete([]byte(kid))
	})
}

// memo runs an update function once per stored version of a record: when
// bbolt reruns a batched function on the same data, the first result is
// reused, so callers' functions run once per version they are given.
type memo[T any] struct {
	raw []byte
	out T
	err error
	ran bool
}

func (m *memo[T]) apply(raw []byte, cur T, fn func(*T) error) (T, error) {
	if m.ran && bytes.Equal(raw, m.raw) {
		return m.out, m.err
	}
	m.raw, m.ran = bytes.Clone(raw), true
	m.err = fn(&cur)
	m.out = cur
	return m.out, m.err
}

package storage

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

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

var (
	bucketUsers        = []byte("users")         // user id -> model.User JSON
	bucketNames        = []byte("names")         // model.NameKey(name) -> user id
	bucketSessions     = []byte("sessions")      // session id -> model.Session JSON
	bucketUserSessions = []byte("user_sessions") // user id + "/" + session id -> ""
	bucketKeys         = []byte("keys")          // kid -> model.SigningKey JSON
	bucketDevices      = []byte("devices")       // device kid -> model.Device JSON
	bucketSessionEnds  = []byte("session_ends")  // EndsAt (8-byte big-endian unix ns) + session id -> ""
	bucketMeta         = []byte("meta")

	allBuckets = [][]byte{bucketUsers, bucketNames, bucketSessions, bucketUserSessions, bucketSessionEnds, bucketKeys, bucketDevices, bucketMeta, bucketGuestIdle, bucketOrphans}
)

// schemaVersion is written to the meta bucket; a file from a newer version is
// refused rather than misread.
const schemaVersion = "1"

// Options tune OpenBolt.
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
	// Identity (default DefaultIdentityCacheSize, 100 000 at about 1.1 KiB
	// each; negative disables the cache).
	IdentityCacheSize int
}

// Bolt is a Backend on one bbolt file, for one process: bbolt locks the
// file, so no other process can write it while it is open.
type Bolt struct {
	db  *bolt.DB
	now func() time.Time
	// commits counts committed write transactions (a batch shared by many
	// callers is one); counted is the write transaction whose commit is
	// already hooked, touched only inside write transactions, which bbolt
	// runs one at a time.
	commits atomic.Uint64
	counted *bolt.Tx
	cache   *IdentityCache
	group   *groupCommit
}

// countCommit makes the commit of tx, once, count in commits, and fills
// the pages of the time-ordered buckets (see appendBuckets).
func (b *Bolt) countCommit(tx *bolt.Tx) {
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

// ctxErr refuses to start a transaction for a cancelled context. A bbolt
// transaction is local and short, so once started it runs to its end.
func ctxErr(ctx context.Context) error {
	if ctx == nil {
		return errors.New("storage: nil context")
	}
	return ctx.Err()
}

func (b *Bolt) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	return b.db.View(fn)
}

func (b *Bolt) update(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	b.cache.WriteBegin()
	defer b.cache.WriteEnd()
	return b.db.Update(func(tx *bolt.Tx) error {
		b.countCommit(tx)
		return fn(tx)
	})
}

// batch shares one commit between concurrent callers (see groupCommit).
// fn may run a second time (after rolling back a commit that another
// caller's function failed), so fn must give the same result when run again
// on the same data; the exported methods see to it, and their callers need
// not care.
func (b *Bolt) batch(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	b.cache.WriteBegin()
	defer b.cache.WriteEnd()
	return b.group.do(func(tx *bolt.Tx) error {
		b.countCommit(tx)
		return fn(tx)
	})
}

var _ Backend = (*Bolt)(nil)

func init() {
	Register(KindBolt, func(_ context.Context, cfg Config) (Backend, error) {
		if cfg.Location == "" {
			return nil, errors.New("bolt storage needs a file path")
		}
		return OpenBolt(cfg.Location, Options{LockTimeout: cfg.LockTimeout, IdentityCacheSize: cfg.IdentityCacheSize})
	})
}

// OpenBolt opens (creating if needed) the bbolt file at path.
func OpenBolt(path string, opt Options) (*Bolt, error) {
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
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opt.LockTimeout, FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: the file is locked by another process (is another Caddy using it?): %w", path, err)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get([]byte("schema")); {
		case v == nil:
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("unsupported schema version %q (this build reads %q)", v, schemaVersion)
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
		opt.IdentityCacheSize = DefaultIdentityCacheSize
	}
	return &Bolt{db: db, now: opt.Now, cache: NewIdentityCache(opt.IdentityCacheSize), group: newGroupCommit(db, opt.MaxBatchDelay)}, nil
}

// Close marks the record counters as exact (see checkCounts) and closes
// the file.
func (b *Bolt) Close() error {
	// A failed mark only costs a recount at the next open.
	err := b.db.Update(func(tx *bolt.Tx) error { return markCounts(tx) })
	return errors.Join(err, b.db.Close())
}

// Path is the file's path.
func (b *Bolt) Path() string { return b.db.Path() }

// Describe implements Backend: the file's path.
func (b *Bolt) Describe() string { return b.db.Path() }

// IdentityCache implements Backend. Every write of this process invalidates
// the records it touches; nothing else writes the file while it is open.
func (b *Bolt) IdentityCache() *IdentityCache { return b.cache }

var jsonUnmarshal = json.Unmarshal

func getJSON(bk *bolt.Bucket, key string, v any) error {
	raw := bk.Get([]byte(key))
	if raw == nil {
		return model.ErrNotFound
	}
	return json.Unmarshal(raw, v)
}

func putJSON(bk *bolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return bk.Put([]byte(key), raw)
}

func userSessionKey(userID, sessionID string) []byte {
	return []byte(userID + "/" + sessionID)
}

// CreateUser implements Backend. It runs in a shared batch commit; a rerun
// of the function by bbolt starts from the rolled-back state, so the checks
// below see the store as it was.
func (b *Bolt) CreateUser(ctx context.Context, u *model.User, s *model.Session, dev *model.Device) error {
	if u.ID == "" || u.Name == "" {
		return errors.New("user needs an id and a name")
	}
	return b.batch(ctx, func(tx *bolt.Tx) error {
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
	})
}

// putNewSession stores the first session of a user just saved without an
// orphan mark: no previous version to replace, no user to re-read.
func (b *Bolt) putNewSession(tx *bolt.Tx, s *model.Session) error {
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
func (b *Bolt) putSession(tx *bolt.Tx, s *model.Session) error {
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
func (b *Bolt) deleteSession(tx *bolt.Tx, s *model.Session) error {
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
func (b *Bolt) markOrphan(tx *bolt.Tx, userID string, now time.Time) error {
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

// GetUser implements Backend.
func (b *Bolt) GetUser(ctx context.Context, id string) (*model.User, error) {
	var u model.User
	err := b.view(ctx, func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bucketUsers), id, &u) })
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// GetUserByName implements Backend; name is matched case-insensitively.
func (b *Bolt) GetUserByName(ctx context.Context, name string) (*model.User, error) {
	var u model.User
	err := b.view(ctx, func(tx *bolt.Tx) error {
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

// UpdateUser implements Backend.
func (b *Bolt) UpdateUser(ctx context.Context, id string, fn func(u *model.User) error) (*model.User, error) {
	var out *model.User
	var memo memo[model.User]
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		users, names := tx.Bucket(bucketUsers), tx.Bucket(bucketNames)
		raw := users.Get([]byte(id))
		if raw == nil {
			return model.ErrNotFound
		}
		var old model.User
		if err := json.Unmarshal(raw, &old); err != nil {
			return err
		}
		oldKey := model.NameKey(old.Name)
		u, err := memo.apply(raw, old, fn)
		if err != nil {
			return err
		}
		if u.ID != id {
			return errors.New("a user's id cannot change")
		}
		if newKey := model.NameKey(u.Name); newKey != oldKey {
			if newKey == "" {
				return errors.New("a user's name cannot be empty")
			}
			if owner := names.Get([]byte(newKey)); owner != nil && string(owner) != id {
				return model.ErrNameTaken
			}
			if err := names.Delete([]byte(oldKey)); err != nil {
				return err
			}
			if err := names.Put([]byte(newKey), []byte(id)); err != nil {
				return err
			}
		}
		if err := b.saveUser(tx, &old, &u); err != nil {
			return err
		}
		out = &u
		return nil
	})
	return out, err
}

// DeleteUser implements Backend: the user, its name, sessions and devices.
func (b *Bolt) DeleteUser(ctx context.Context, id string) error {
	return b.batch(ctx, func(tx *bolt.Tx) error {
		var u model.User
		if err := getJSON(tx.Bucket(bucketUsers), id, &u); err != nil {
			return err
		}
		return b.deleteUser(tx, &u)
	})
}

func (b *Bolt) deleteUser(tx *bolt.Tx, u *model.User) error {
	if _, err := b.deleteUserSessions(tx, u.ID, ""); err != nil {
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
	return b.saveUser(tx, u, nil)
}

// Identity implements Backend. It is served from a cache of decoded records
// when it can be (see identityCache): the returned values are shared and
// must not be modified.
func (b *Bolt) Identity(ctx context.Context, userID, sessionID string) (*model.User, *model.Session, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, nil, err
	}
	if u, s, ok := b.cache.Get(userID, sessionID); ok {
		return u, s, nil
	}
	before := b.cache.Snapshot()
	var u model.User
	var s model.Session
	err := b.view(ctx, func(tx *bolt.Tx) error {
		// The session first: it names its user, so a mismatch costs no
		// user decode.
		raw := tx.Bucket(bucketSessions).Get([]byte(sessionID))
		if raw == nil {
			return model.ErrNotFound
		}
		if err := decodeSession(raw, &s); err != nil {
			return err
		}
		if s.UserID != userID {
			return model.ErrNotFound
		}
		if raw = tx.Bucket(bucketUsers).Get([]byte(userID)); raw == nil {
			return model.ErrNotFound
		}
		if err := decodeUser(raw, &u); err != nil {
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

// GetSession implements Backend.
func (b *Bolt) GetSession(ctx context.Context, id string) (*model.Session, error) {
	var s model.Session
	err := b.view(ctx, func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bucketSessions), id, &s) })
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// UpdateSession implements Backend.
func (b *Bolt) UpdateSession(ctx context.Context, id string, fn func(s *model.Session) error) (*model.Session, error) {
	var out *model.Session
	var memo memo[model.Session]
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		raw := tx.Bucket(bucketSessions).Get([]byte(id))
		if raw == nil {
			return model.ErrNotFound
		}
		var cur model.Session
		if err := json.Unmarshal(raw, &cur); err != nil {
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
		return nil
	})
	return out, err
}

// PutSession implements Backend; the user must exist.
func (b *Bolt) PutSession(ctx context.Context, s *model.Session) error {
	return b.batch(ctx, func(tx *bolt.Tx) error {
		if tx.Bucket(bucketUsers).Get([]byte(s.UserID)) == nil {
			return model.ErrNotFound
		}
		return b.putSession(tx, s)
	})
}

// PutSessionLimit implements Backend: one write transaction stores s and
// ends the user's oldest other sessions beyond keep.
func (b *Bolt) PutSessionLimit(ctx context.Context, s *model.Session, keep int) (int, error) {
	var ended int
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		ended = 0 // a batched function may run twice
		if tx.Bucket(bucketUsers).Get([]byte(s.UserID)) == nil {
			return model.ErrNotFound
		}
		if err := b.putSession(tx, s); err != nil {
			return err
		}
		if keep <= 0 {
			return nil
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
				return err
			}
			others = append(others, o)
		}
		excess := len(others) + 1 - keep
		if excess <= 0 {
			return nil
		}
		slices.SortFunc(others, func(x, y model.Session) int {
			if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
				return c
			}
			return strings.Compare(x.ID, y.ID)
		})
		for i := range others[:excess] {
			if err := b.deleteSession(tx, &others[i]); err != nil {
				return err
			}
		}
		ended = excess
		return nil
	})
	return ended, err
}

// DeleteSession implements Backend.
func (b *Bolt) DeleteSession(ctx context.Context, id string) error {
	now := b.now()
	return b.batch(ctx, func(tx *bolt.Tx) error {
		var s model.Session
		if err := getJSON(tx.Bucket(bucketSessions), id, &s); err != nil {
			return err
		}
		if err := b.deleteSession(tx, &s); err != nil {
			return err
		}
		return b.markOrphan(tx, s.UserID, now)
	})
}

// DeleteUserSessions implements Backend.
func (b *Bolt) DeleteUserSessions(ctx context.Context, userID, keep string) (int, error) {
	now := b.now()
	var n int
	err := b.batch(ctx, func(tx *bolt.Tx) error {
		var err error
		if n, err = b.deleteUserSessions(tx, userID, keep); err != nil {
			return err
		}
		return b.markOrphan(tx, userID, now)
	})
	return n, err
}

func (b *Bolt) deleteUserSessions(tx *bolt.Tx, userID, keep string) (int, error) {
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

// DeleteEndedSessions implements Backend. It reads the end-time index, so its
// cost depends on how many sessions ended, not on how many exist.
func (b *Bolt) DeleteEndedSessions(ctx context.Context, now time.Time, limit int) (int, error) {
	var n int
	err := b.update(ctx, func(tx *bolt.Tx) error {
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

// SigningKeys implements Backend, oldest first.
func (b *Bolt) SigningKeys(ctx context.Context) ([]model.SigningKey, error) {
	var keys []model.SigningKey
	err := b.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).ForEach(func(_, v []byte) error {
			var k model.SigningKey
			if err := json.Unmarshal(v, &k); err != nil {
				return err
			}
			keys = append(keys, k)
			return nil
		})
	})
	slices.SortFunc(keys, func(a, b model.SigningKey) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return keys, err
}

// AddSigningKey implements Backend.
func (b *Bolt) AddSigningKey(ctx context.Context, k model.SigningKey) error {
	return b.update(ctx, func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketKeys)
		if bk.Get([]byte(k.KID)) != nil {
			return fmt.Errorf("signing key %s: %w", k.KID, model.ErrExists)
		}
		return putJSON(bk, k.KID, k)
	})
}

// DeleteSigningKey implements SigningKeyDeleter.
func (b *Bolt) DeleteSigningKey(ctx context.Context, kid string) error {
	return b.update(ctx, func(tx *bolt.Tx) error {
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

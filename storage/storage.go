// Package storage is the contract of guestauth's stores: Backend, which
// every backend implements in full (storage/bolt on an embedded bbolt file,
// storage/postgres on a PostgreSQL database shared by several processes),
// the identity cache they read through, the outbox and event types of their
// writes, the record decoder, and a registry that opens a backend by kind.
// storage/storagetest is the conformance suite every backend passes.
//
// The packages using a store declare the interfaces they consume
// themselves (as hashicorp/raft-boltdb's consumers do); any Backend
// satisfies them. Every multi-record change (a user with its name index
// and first session, an upgrade that moves a name) is atomic, so a crash
// or a rejected request never leaves a partial record.
//
// A backend stores and indexes; it applies no policy. Which guests expire,
// and when, is decided by the accounts package from the index queries below.
package storage

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Backend is what a store provides: every backend has every method. Every
// method takes a context first; a backend must not start work for a
// cancelled one, and a network backend applies its deadline.
//
// Update functions (UpdateUser, UpdateSession) must only modify the record
// they are given; they may be called again with a newer version of the
// record when a concurrent write changed it first, but never twice with the
// same version.
//
// The writes that report events (CreateUser, UpdateUser, DeleteUser,
// UpdateSession, DeleteSession, DeleteUserSessions, DeleteUsersIf) take an
// Events last (nil: none): see Events for what a backend does with it.
type Backend interface {
	// CreateUser stores a new user, its name index entry, its first session
	// (when s is not nil) and its device key (when dev is not nil), all at
	// once. ErrExists: the id or the device kid is used; ErrNameTaken: the
	// name (by NameKey) is. Its TxResult has Created: the user.
	CreateUser(ctx context.Context, u *model.User, s *model.Session, dev *model.Device, ev Events) error
	GetUser(ctx context.Context, id string) (*model.User, error)
	// GetUserByName finds a user by NameKey(name).
	GetUserByName(ctx context.Context, name string) (*model.User, error)
	// FindUsersByName returns up to limit users whose NameKey starts with
	// NameKey(prefix), in NameKey order (the dashboard's search). It reads
	// the name index from the prefix on, never the whole table.
	FindUsersByName(ctx context.Context, prefix string, limit int) ([]model.User, error)
	// GetUserByEmail finds the user whose verified address
	// (User.VerifiedEmailKey) is model.EmailKey(email); an unverified
	// address finds nobody. Verified addresses are unique: every write
	// of a user (CreateUser, UpdateUser) refuses with ErrEmailTaken,
	// writing nothing, a verified address another user has verified.
	GetUserByEmail(ctx context.Context, email string) (*model.User, error)
	// UpdateUser applies fn to the stored user and saves the result, moving
	// the name index entry if the name changed (ErrNameTaken if taken). An
	// error from fn is returned and nothing is written. Its TxResult is
	// empty: the caller knows from fn what changed.
	UpdateUser(ctx context.Context, id string, fn func(u *model.User) error, ev Events) (*model.User, error)
	// DeleteUser deletes a user, its name index entry, sessions and device.
	// Its TxResult has Deleted: the user.
	DeleteUser(ctx context.Context, id string, ev Events) error
	// ListUsers returns up to limit users with ids after the given one, in
	// id order, optionally only those with tag; next is "" on the last page.
	ListUsers(ctx context.Context, after, tag string, limit int) (users []model.User, next string, err error)

	// Identity reads a user and one of its sessions at one point in time
	// (ErrNotFound unless both exist and belong together), through the
	// backend's IdentityCache: the values returned may be shared and must
	// not be modified.
	Identity(ctx context.Context, userID, sessionID string) (*model.User, *model.Session, error)
	GetSession(ctx context.Context, id string) (*model.Session, error)
	// ListUserSessions returns a user's sessions, oldest first (by
	// CreatedAt, then ID); none for an unknown user.
	ListUserSessions(ctx context.Context, userID string) ([]model.Session, error)
	// UpdateSession applies fn to the stored session and saves it. Its
	// TxResult is empty.
	UpdateSession(ctx context.Context, id string, fn func(s *model.Session) error, ev Events) (*model.Session, error)
	// PutSession stores a session of an existing user (ErrNotFound if not).
	PutSession(ctx context.Context, s *model.Session) error
	// PutSessionLimit is PutSession that then ends the user's oldest other
	// sessions (by CreatedAt, then ID) so that at most keep remain, in the
	// same transaction; keep <= 0 means no limit. It reports how many it
	// ended; the new session is never one of them.
	PutSessionLimit(ctx context.Context, s *model.Session, keep int) (int, error)
	// DeleteSession deletes a session (ErrNotFound if there is none). Its
	// TxResult has Ended: 1.
	DeleteSession(ctx context.Context, id string, ev Events) error
	// DeleteUserSessions ends every session of a user except keep (may be
	// "") and reports how many it ended (its TxResult's Ended).
	DeleteUserSessions(ctx context.Context, userID, keep string, ev Events) (int, error)
	// DeleteEndedSessions deletes up to limit sessions whose EndsAt is not
	// after now, oldest first, and reports how many it deleted.
	DeleteEndedSessions(ctx context.Context, now time.Time, limit int) (int, error)

	// Deleting an ephemeral user's last session (by any of the methods above)
	// sets its OrphanedAt, to the backend's clock; storing a session for it
	// clears it.

	// GetDevice reads the device key bound to kid (ErrNotFound if none).
	GetDevice(ctx context.Context, kid string) (*model.Device, error)
	// PutChallenge stores a single-use challenge under the SHA-256 of token
	// (ErrExists if that token is stored). Only the hash is stored.
	PutChallenge(ctx context.Context, token string, c model.Challenge) error
	// ConsumeChallenge deletes and returns the challenge of token at once,
	// so of concurrent callers exactly one gets it (ErrNotFound if it is
	// unknown, already consumed or expired at now). Both challenge methods
	// may also delete a bounded number of expired challenges.
	ConsumeChallenge(ctx context.Context, token string, now time.Time) (*model.Challenge, error)

	// Flow states (model.FlowState): single-use records that expire,
	// stored under the SHA-256 of kind, a zero byte and handle, never under
	// the handle, so a copy of the store cannot answer an outstanding code.
	// A handle of one kind never finds a record of another.
	//
	// PutFlowState stores f (its Kind set to kind; ErrExists if the handle
	// is stored). GetFlowState reads it without taking it (ErrNotFound if
	// unknown or expired at now; a spent one is returned with ErrSpent).
	// TakeFlowState marks it spent at now and returns it, at once, so of
	// concurrent callers exactly one gets it without an error; every later
	// take until it expires gets the record with its SpentAt and ErrSpent,
	// and after that ErrNotFound, as for a handle never stored. Each of the
	// three may also delete a bounded number of expired records.
	PutFlowState(ctx context.Context, kind, handle string, f model.FlowState) error
	GetFlowState(ctx context.Context, kind, handle string, now time.Time) (*model.FlowState, error)
	TakeFlowState(ctx context.Context, kind, handle string, now time.Time) (*model.FlowState, error)
	// RedeemFlowState is TakeFlowState for a ceremony that ends by signing
	// someone in (an authorization code; a WebAuthn assertion or an email
	// link are the same shape): in one transaction it takes the record and
	// stores the session start makes of it, as PutSessionLimit does with
	// keep, and reports how many sessions that ended. The record is spent
	// exactly when its session exists, so whoever finds it spent finds the
	// session too. start is called with the live unspent record (maybe
	// more than once, with the same record); its error is returned and
	// nothing is written, the record left unspent. A spent or unknown
	// record is answered as TakeFlowState answers it, start not called and
	// nothing written; ErrNotFound also when the session's user does not
	// exist.
	RedeemFlowState(ctx context.Context, kind, handle string, now time.Time, keep int, start func(f *model.FlowState) (*model.Session, error)) (*model.FlowState, int, error)

	// Identity links (model.IdentityLink), each stored with its user's
	// Identities count in one write. LinkIdentity, in one transaction,
	// applies fn (nil: none) to the user l.UserID names, as UpdateUser
	// does, raises its Identities by one and stores l; ErrNotFound: no such
	// user; ErrExists: l's issuer and subject are linked (to anyone), and
	// nothing is written. GetIdentityLink finds the link of an issuer and
	// subject (ErrNotFound). ListIdentityLinks returns a user's links,
	// oldest first. UnlinkIdentity deletes the user's link of issuer and
	// subject and lowers its Identities by one, after allow (nil: always),
	// called with the user as it would be saved, returns nil; allow's
	// error is returned and nothing written. ErrNotFound: the user has no
	// such link. Deleting a user deletes its links.
	LinkIdentity(ctx context.Context, l model.IdentityLink, fn func(u *model.User) error, ev Events) (*model.User, error)
	GetIdentityLink(ctx context.Context, issuer, subject string) (*model.IdentityLink, error)
	ListIdentityLinks(ctx context.Context, userID string) ([]model.IdentityLink, error)
	UnlinkIdentity(ctx context.Context, userID, issuer, subject string, allow func(u *model.User) error, ev Events) error

	// Population queries. GuestCounts reports how many users have tag
	// guest-user and how many of those are Kept.
	GuestCounts(ctx context.Context) (live, kept int64, err error)
	// TouchUsers raises users' LastActiveAt to the given times in one
	// write; times not newer than the stored one, and unknown users, are
	// skipped. It reports how many users it changed.
	TouchUsers(ctx context.Context, at map[string]time.Time) (int, error)
	// ScanIdleGuests calls fn for each ephemeral user (User.Ephemeral: a
	// guest or a passwordless normal user) that is not Kept and whose
	// ActiveAt is before before, oldest first, from one consistent read,
	// until fn returns false.
	ScanIdleGuests(ctx context.Context, before time.Time, fn func(u *model.User) bool) error
	// CountIdleGuests counts the users ScanIdleGuests(before) would
	// visit, from the same index, without reading their records.
	CountIdleGuests(ctx context.Context, before time.Time) (int64, error)
	// ScanOrphans calls fn for each ephemeral user that is not Kept, has no
	// DeviceKID and has OrphanedAt set, from one consistent read, until fn
	// returns false.
	ScanOrphans(ctx context.Context, fn func(u *model.User) bool) error
	// DeleteUsersIf deletes, at once, each listed user (as DeleteUser does)
	// for which pred, called with the current record, is true. Unknown ids
	// are skipped. It returns the deleted users (its TxResult's Deleted).
	DeleteUsersIf(ctx context.Context, ids []string, pred func(u *model.User) bool, ev Events) ([]model.User, error)

	// SigningKeys returns the signing keys, oldest first.
	SigningKeys(ctx context.Context) ([]model.SigningKey, error)
	// AddSigningKey stores a key (ErrExists if its kid is).
	AddSigningKey(ctx context.Context, k model.SigningKey) error
	// SetSigningKeyCert stores the certificate of a key stored without one
	// (ErrNotFound if there is no such key; ErrExists if it has one: a
	// certificate, once published, never changes).
	SetSigningKeyCert(ctx context.Context, kid string, cert []byte) error
	// DeleteSigningKey deletes a key no token can use any more (see
	// tokens.Keyring.RetireKeys). Deleting an unknown kid is not an error.
	DeleteSigningKey(ctx context.Context, kid string) error
	// LockSigningKeys runs fn holding the store's signing-key lock: of all
	// the processes using the store, one at a time holds it, so processes
	// starting together generate one key, not one each. It waits for the
	// lock until ctx is done (then returns ctx's error without running fn).
	LockSigningKeys(ctx context.Context, fn func(ctx context.Context) error) error
	// TryLockSweep runs fn unless another holder, in any process using the
	// store, holds the sweep lock called name, and reports whether it ran:
	// periodic sweeps run once at a time. Different names are different
	// locks.
	TryLockSweep(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error)

	SharedLimiter
	Outbox
	PasskeyStore
	DailyStore

	// Stats counts users, guests and sessions.
	Stats(ctx context.Context) (*Stats, error)
	// Counts is Stats without the sizes (Path, FileSize and DataSize
	// empty): the counters alone, which the dashboard and the metrics
	// read on every request or scrape.
	Counts(ctx context.Context) (*Stats, error)
	// Backup writes a consistent copy of the whole store to w, while
	// writers go on. size, when not nil, is called with the copy's exact
	// length before anything is written.
	Backup(ctx context.Context, w io.Writer, size func(n int64)) (int64, error)
	// Describe names the store for logs and the admin API (a file path; a
	// network store's address without credentials).
	Describe() string
	// Shared reports whether other processes may use the store at the same
	// time (a database several Caddy instances share), rather than this
	// process alone (a file it locks). Processes sharing a store share its
	// signing keys, so they must agree on the issuer.
	Shared() bool
	// IdentityCache is the cache Identity reads through. A backend shared
	// by several processes invalidates it from the other processes' change
	// notifications.
	IdentityCache() *IdentityCache

	Close() error
}

// SharedLimiter is the part of Backend that keeps token buckets (GCRA) in
// the store, so that every process using it draws on the same budget and
// a budget outlives the process. A bucket is named by a limit (name) and a
// key within it; burst tries are allowed at once, then one more per
// interval. Each call is atomic across processes. A store that cannot
// answer returns an error (ErrUnavailable), never an allowed try.
type SharedLimiter interface {
	// LimitTake spends one try of (name, key) at now and returns 0, or
	// returns how long until a try will be available, spending nothing.
	LimitTake(ctx context.Context, name, key string, burst int, interval time.Duration, now time.Time) (time.Duration, error)
	// LimitRefund gives back one try taken by LimitTake.
	LimitRefund(ctx context.Context, name, key string, interval time.Duration) error
	// LimitReset forgets (name, key): it has a full bucket again.
	LimitReset(ctx context.Context, name, key string) error
}

// KindBolt is the bbolt backend's kind, the default.
const KindBolt = "bolt"

// ModuleNamespace is the Caddy module namespace of the storage modules:
// each backend registers its kind k as the module guest_auth.storage.<k>
// (as certmagic's storage modules do under caddy.storage), and the
// guest_auth handler's `storage` option loads one by kind.
const ModuleNamespace = "guest_auth.storage"

// Module is what a storage module implements besides caddy.Module: its
// options, checked and resolved (placeholders) when Caddy provisions it,
// name one store and open it.
type Module interface {
	// StoreKey names the store: configs naming the same store get the
	// same key and share one open store (and the admin API's storage
	// parameter names it by this key). It never holds a password.
	StoreKey() string
	// OpenStore opens the store.
	OpenStore(ctx context.Context) (Backend, error)
}

// Config chooses and locates a backend for Open.
type Config struct {
	// Kind is a registered backend kind (KindBolt when empty).
	Kind string
	// Location is where the store is: the bbolt file's path, a network
	// store's connection string.
	Location string
	// Options are the backend's own options (bolt.Options,
	// postgres.Options), or nil for its defaults.
	Options any
}

// Opener opens a backend of one kind; it refuses Options of another type.
type Opener func(ctx context.Context, cfg Config) (Backend, error)

var (
	registryMu sync.RWMutex
	registry   = map[string]Opener{}
)

// Register makes a backend kind available to Open (a backend package
// registers itself when imported). Registering a kind twice panics.
func Register(kind string, open Opener) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if _, dup := registry[kind]; dup || kind == "" || open == nil {
		panic(fmt.Sprintf("storage: bad or duplicate registration of backend %q", kind))
	}
	registry[kind] = open
}

// Kinds lists the registered backend kinds, sorted.
func Kinds() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	kinds := make([]string, 0, len(registry))
	for k := range registry {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	return kinds
}

// Open opens the backend cfg names.
func Open(ctx context.Context, cfg Config) (Backend, error) {
	if cfg.Kind == "" {
		cfg.Kind = KindBolt
	}
	registryMu.RLock()
	open := registry[cfg.Kind]
	registryMu.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("unknown storage kind %q (known: %s)", cfg.Kind, strings.Join(Kinds(), ", "))
	}
	if err := CtxErr(ctx); err != nil {
		return nil, err
	}
	return open(ctx, cfg)
}

// CtxErr is what every backend method checks first: a nil or cancelled
// context starts no work.
func CtxErr(ctx context.Context) error {
	if ctx == nil {
		return errors.New("storage: nil context")
	}
	return ctx.Err()
}

// Stats describes the store, all read at one point in time.
type Stats struct {
	// Path is what Describe says: the bbolt file's path, the database.
	Path string `json:"path"`
	// FileSize is the file's (the database's) size on disk; DataSize the
	// part in use (guestauth's tables), which for bbolt is also the exact
	// size of a backup.
	FileSize int64 `json:"file_size"`
	DataSize int64 `json:"data_size"`
	// Users counts every user; NormalUsers those that are not guests.
	Users       int64 `json:"users"`
	NormalUsers int64 `json:"normal_users"`
	LiveGuests  int64 `json:"live_guests"`
	KeptGuests  int64 `json:"kept_guests"`
	Sessions    int64 `json:"sessions"`
}

// FlowKey is the key a backend stores a flow state under: the SHA-256 of
// kind, a zero byte and handle.
func FlowKey(kind, handle string) []byte {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write([]byte(handle))
	return h.Sum(nil)
}

// CheckFlowState is what PutFlowState refuses in every backend: an empty
// kind or handle, a record without its creation (the caller's now, which
// the backend's purge of expired records goes by) or its expiry.
func CheckFlowState(kind, handle string, f *model.FlowState) error {
	if kind == "" || handle == "" || f.CreatedAt.IsZero() || f.ExpiresAt.IsZero() {
		return errors.New("a flow state needs a kind, a handle, a creation and an expiry time")
	}
	return nil
}

// IdentityKey is the key a backend stores an identity link under: issuer
// and subject joined by a zero byte, which neither may contain.
func IdentityKey(issuer, subject string) string { return issuer + "\x00" + subject }

// CheckIdentityLink is what LinkIdentity refuses in every backend.
func CheckIdentityLink(l *model.IdentityLink) error {
	switch {
	case l.Issuer == "" || l.Subject == "" || l.UserID == "":
		return errors.New("an identity link needs an issuer, a subject and a user")
	case strings.ContainsRune(l.Issuer, 0) || strings.ContainsRune(l.Subject, 0):
		return errors.New("an identity link's issuer and subject cannot contain a zero byte")
	case l.LinkedAt.IsZero():
		return errors.New("an identity link needs its time")
	}
	return nil
}

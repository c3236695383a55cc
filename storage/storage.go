// Package storage persists guestauth's users, sessions and signing keys.
//
// Store is the interface the domain packages use; Bolt is its implementation
// on an embedded bbolt file. Every multi-record change (a user with its name
// index and first session, an upgrade that moves a name) happens in one write
// transaction, so a crash or a rejected request never leaves a partial record.
package storage

import (
	"errors"
	"strings"
	"time"
)

// User tags, as in Casdoor / Hanzo IAM.
const (
	TagGuest  = "guest-user"
	TagNormal = "normal-user"
)

// GuestNamePrefix starts every guest's generated username; it is reserved.
const GuestNamePrefix = "guest_"

var (
	// ErrNotFound is returned when a record does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNameTaken is returned when a username is already used by another user
	// (compared case-insensitively).
	ErrNameTaken = errors.New("name already taken")
	// ErrExists is returned when creating a record whose key already exists.
	ErrExists = errors.New("already exists")
)

// User is one account. ID is the OIDC `sub` and never changes.
type User struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"display_name,omitempty"`
	Tag         string `json:"tag"`
	// PasswordHash is empty for guests: their Casdoor-style "random password"
	// is a secret nobody holds, which is the same as having no password.
	PasswordHash string    `json:"password_hash,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// DeviceKID is the key id of the device key-pair bound to an anonymous
	// user created by the key-pair grant; empty otherwise.
	DeviceKID string `json:"device_kid,omitempty"`
	// OrphanedAt is set when a guest's last session ends (a guest lives as
	// long as its sessions) and cleared when it gets a new one.
	OrphanedAt time.Time `json:"orphaned_at,omitzero"`
	// LastActiveAt is the last recorded activity (token issuance, refresh,
	// proxied request), written in coalesced batches.
	LastActiveAt time.Time `json:"last_active_at,omitzero"`
	// Kept guests never expire: the app said they own data.
	Kept bool `json:"kept,omitempty"`
}

// IsAnonymous reports whether the user is still a guest.
func (u *User) IsAnonymous() bool { return u.Tag == TagGuest }

// Session is one sign-in of a user through a client: every token set belongs
// to exactly one session, and ending the session ends its tokens.
type Session struct {
	ID       string    `json:"id"`
	UserID   string    `json:"user_id"`
	ClientID string    `json:"client_id"`
	AuthTime time.Time `json:"auth_time"`
	// CreatedAt + the absolute lifetime bounds the session (ExpiresAt).
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	// IdleExpiresAt is LastUsedAt + the idle timeout in force when it was used.
	IdleExpiresAt time.Time `json:"idle_expires_at"`
	// RefreshKey derives the refresh token of each generation
	// (HMAC(RefreshKey, id|generation)); only Generation's token is valid.
	RefreshKey []byte `json:"refresh_key"`
	Generation uint64 `json:"generation"`
}

// EndsAt is when the session ends unless used again: the earlier of its
// absolute and idle expiry.
func (s *Session) EndsAt() time.Time {
	if s.IdleExpiresAt.Before(s.ExpiresAt) {
		return s.IdleExpiresAt
	}
	return s.ExpiresAt
}

// SigningKey is a persisted token-signing key (private JWK JSON).
type SigningKey struct {
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	CreatedAt time.Time `json:"created_at"`
	JWK       []byte    `json:"jwk"`
}

// Device is a device public key bound to an anonymous user.
type Device struct {
	KID       string    `json:"kid"`
	UserID    string    `json:"user_id"`
	JWK       []byte    `json:"jwk"`
	CreatedAt time.Time `json:"created_at"`
}

// NameKey is the unique-index key of a username: usernames are unique
// case-insensitively and compared after trimming.
func NameKey(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// Store is what the domain logic needs from persistence.
type Store interface {
	// CreateUser stores a new user, its name index entry, its first session
	// and, when dev is not nil, its device key, all at once.
	CreateUser(u *User, s *Session, dev *Device) error
	GetUser(id string) (*User, error)
	GetUserByName(name string) (*User, error)
	// UpdateUser applies fn to the stored user and saves the result, moving
	// the name index entry if the name changed (ErrNameTaken if taken).
	// fn may run more than once and must only modify the user it is given.
	UpdateUser(id string, fn func(u *User) error) (*User, error)
	DeleteUser(id string) error

	// Identity reads a user and one of its sessions in one read transaction.
	Identity(userID, sessionID string) (*User, *Session, error)
	GetSession(id string) (*Session, error)
	UpdateSession(id string, fn func(s *Session) error) (*Session, error)
	PutSession(s *Session) error
	// PutSessionLimit is PutSession that then ends the user's oldest other
	// sessions (by CreatedAt) so that at most keep remain, in the same
	// transaction; keep <= 0 means no limit. It reports how many it ended.
	PutSessionLimit(s *Session, keep int) (int, error)
	DeleteSession(id string) error
	// DeleteUserSessions ends every session of a user except keep (may be "").
	DeleteUserSessions(userID, keep string) (int, error)
	// DeleteEndedSessions deletes up to limit sessions whose EndsAt is not
	// after now, oldest first, and reports how many it deleted.
	DeleteEndedSessions(now time.Time, limit int) (int, error)

	// Deleting a guest's last session marks the guest orphaned (OrphanedAt);
	// storing a new session for it clears the mark.

	// GetDevice reads the device key bound to kid (ErrNotFound if none).
	GetDevice(kid string) (*Device, error)
	// PutChallenge stores a single-use challenge under the SHA-256 of token.
	PutChallenge(token string, c Challenge) error
	// ConsumeChallenge deletes and returns the challenge of token in one
	// transaction, so concurrent callers cannot both get it (ErrNotFound if
	// it is unknown, already consumed or expired at now). The caller checks
	// its purpose. Both challenge methods also delete a bounded number of
	// expired challenges.
	ConsumeChallenge(token string, now time.Time) (*Challenge, error)

	// GuestCounts reports how many guests exist and how many are kept.
	GuestCounts() (live, kept int64, err error)

	SigningKeys() ([]SigningKey, error)
	AddSigningKey(k SigningKey) error

	Close() error
}

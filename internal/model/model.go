// Package model is guestauth's domain: users, sessions, device keys,
// signing keys and challenges as every layer sees them, the errors the
// stores report, and the rule deciding which users expire. It imports
// nothing of the project's own, so every other package can depend on it.
package model

import (
	"encoding/json"
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
	// ErrUnavailable wraps a failure to reach a network store (the server
	// is down, restarting or overloaded): the request may succeed when
	// retried later. The wrapped message never holds credentials, but it
	// is for logs, not for clients.
	ErrUnavailable = errors.New("storage unavailable")
	// ErrSpent is returned when a single-use flow state is taken again
	// before it expires (a replayed authorization code): the record comes
	// with it, so the caller can undo what the first take did.
	ErrSpent = errors.New("already used")
	// ErrEmailTaken is returned when a user's verified email address is
	// already another user's verified address (compared by EmailKey).
	ErrEmailTaken = errors.New("email address already taken")
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
	// Email is the address the user gave, as given; it counts (sign-in
	// by email, sign-in links, password recovery, the email_verified
	// claim) only once EmailVerified, and verified addresses are unique
	// by EmailKey. A changed address starts unverified.
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified,omitempty"`
	// Passkeys counts the user's stored passkeys (WebAuthn credentials);
	// the store keeps it with the passkeys themselves, in the same write,
	// so the expiry rule (Ephemeral) can read it from the record.
	Passkeys int `json:"passkeys,omitempty"`
	// Identities counts the accounts at other providers linked to the
	// user (IdentityLink): each is a way back in, so a user with one is
	// not Ephemeral. The store keeps it with the links, in their writes.
	Identities int `json:"identities,omitempty"`
}

// VerifiedEmailKey is the EmailKey of u's verified address, or "" when it
// has none: the key of the store's unique verified-email index.
func (u *User) VerifiedEmailKey() string {
	if u == nil || !u.EmailVerified || u.Email == "" {
		return ""
	}
	return EmailKey(u.Email)
}

// IsAnonymous reports whether the user is still a guest.
func (u *User) IsAnonymous() bool { return u.Tag == TagGuest }

// Ephemeral reports whether u has no credential that outlives its sessions
// and device key: a guest, or a normal user who never set a password (a
// name-only upgrade), without a verified email address (with one, a
// sign-in link brings it back), without a passkey and without a linked
// provider account. Ephemeral users expire like guests, after the guest
// idle TTL or once orphaned, unless kept. This is the one place the rule
// lives: the store's expiry indexes, the prune re-check and the keep header
// all use it.
func (u *User) Ephemeral() bool {
	return (u.IsAnonymous() || u.PasswordHash == "") && !u.EmailVerified && u.Passkeys == 0 && u.Identities == 0
}

// ActiveAt is the user's last recorded activity (its creation at least).
func (u *User) ActiveAt() time.Time {
	if u.LastActiveAt.After(u.CreatedAt) {
		return u.LastActiveAt
	}
	return u.CreatedAt
}

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
	// MergedFrom is, for a browser session started by a sign-in from a
	// guest's session, that guest's id until the app has been told of the
	// merge (the first proxied request of the session clears it).
	MergedFrom string `json:"merged_from,omitempty"`
	// Issuer is the issuer the session was started under: its refresh
	// token and its browser handle are honoured under that issuer only,
	// so sites sharing a store do not accept each other's. A session
	// stored before sessions had one has none, and takes the issuer of its
	// next refresh or browser slide.
	Issuer string `json:"issuer,omitempty"`
	// Scope is the scope granted to the session's client (an authorization
	// code's); empty for the grants that carry the default scope.
	Scope string `json:"scope,omitempty"`
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
	// Cert is a self-signed X.509 certificate (DER) of the key's public
	// half, published as the JWK's x5c for SDKs that take a certificate.
	// Made once with the key (or, for a key stored before certificates,
	// once afterwards) and kept, so it never changes under a client that
	// pinned it.
	Cert []byte `json:"cert,omitempty"`
}

// Device is a device public key bound to an anonymous user.
type Device struct {
	KID       string    `json:"kid"`
	UserID    string    `json:"user_id"`
	JWK       []byte    `json:"jwk"`
	CreatedAt time.Time `json:"created_at"`
}

// Challenge is a stored single-use challenge of the device key-pair grant,
// or an Authgear promotion code; its token is not kept, only its hash.
type Challenge struct {
	Purpose   string    `json:"purpose"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// UserID and ClientID bind a challenge to a user and client (an
	// Authgear promotion code: the guest to promote, through which client).
	UserID   string `json:"user_id,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

// FlowState is a single-use record that expires: an authorization code,
// an authorization request waiting for the visitor to sign in, a logout
// waiting for confirmation. It is stored under the SHA-256 of its kind and
// a secret handle only its holder knows (the code itself, an id in a URL),
// never under the handle. The first take marks it spent and returns it;
// the spent record stays until it expires, so a second take is told apart
// from an unknown handle (ErrSpent) and the caller can undo what the first
// one did.
type FlowState struct {
	Kind      string    `json:"kind"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// SpentAt is when it was first taken (zero until then).
	SpentAt time.Time `json:"spent_at,omitzero"`
	// Data is the caller's record, as JSON; the store does not read it.
	Data json.RawMessage `json:"data"`
}

// NameKey is the unique-index key of a username: usernames are unique
// case-insensitively and compared after trimming.
func NameKey(name string) string { return strings.ToLower(strings.TrimSpace(name)) }

// EmailKey is the unique-index key of an email address: addresses are
// compared case-insensitively (as every provider we interoperate with
// treats them) after trimming. The accounts package stores an address with
// its domain already normalised (lowercase ASCII, IDNA), so one domain
// has one key whichever way it was typed.
func EmailKey(addr string) string { return strings.ToLower(strings.TrimSpace(addr)) }

// IdentityLink links an account at another provider (an OpenID Connect
// issuer and the subject it names) to a user: signing in there signs the
// user in here. An issuer and subject are linked to one user at most.
type IdentityLink struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
	UserID  string `json:"user_id"`
	// Provider is the name of the configured provider it came through
	// (for display; the issuer is what identifies it).
	Provider string    `json:"provider,omitempty"`
	LinkedAt time.Time `json:"linked_at"`
}

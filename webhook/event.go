package webhook

import "time"

// Event types: the value of [Event].Type. Each names the Data keys it
// carries; receivers should ignore types and keys they do not know, since
// new ones may be added.
const (
	// GuestCreated: a guest user was created (data: via, one of "code",
	// "keypair", "browser" or "web" (Authgear's web anonymous sign-up);
	// device_kid for a key pair; client_ip from a browser).
	GuestCreated = "guest.created"
	// GuestUpgraded: a guest became a named account, keeping its user id
	// (data: old_name, new_name).
	GuestUpgraded = "guest.upgraded"
	// GuestExpired: an idle guest was deleted (data: name, reason).
	GuestExpired = "guest.expired"
	// GuestMerged: a visitor with a guest session signed in to an existing
	// account (data: guest_id, user_id); the app may move the guest's data.
	// The guest session ended; the guest expires normally unless kept.
	GuestMerged = "guest.merged"
	// SessionRevoked: one or more sessions ended early (data: cause, such as
	// "logout", "admin" or "password_changed"; and, except for a logout,
	// sessions: how many).
	SessionRevoked = "session.revoked"
	// RefreshReuseDetected: a spent refresh token was presented again, so
	// its session was ended; a sign of a stolen token (data: client_ip).
	RefreshReuseDetected = "refresh.reuse_detected"
	// SignInThrottled: sign-in attempts were refused for too many failures
	// (data: client_ip, retry_after_s, count, and since in a summary). It
	// is coalesced: see the package documentation.
	SignInThrottled = "signin.throttled"
	// UserDeleted: a user was deleted (data: name, tag, cause such as
	// "admin").
	UserDeleted = "user.deleted"
	// UserCreated: a named user was created directly, not as a guest: by
	// a client with manage_users through Casdoor's /api/add-user (data:
	// name, via "api"; client_id names the client).
	UserCreated = "user.created"
	// PasswordReset: a user set a new password with a reset link mailed
	// to their verified address; every session of the user ended (data:
	// via "email", client_ip).
	PasswordReset = "password.reset"
	// IdentityLinked: an account at another provider was linked to a
	// user, as a way to sign in (data: provider, issuer, and via
	// "signin" or "link").
	IdentityLinked = "identity.linked"
	// IdentityUnlinked: a user removed a linked provider account (data:
	// provider, issuer).
	IdentityUnlinked = "identity.unlinked"
)

// Event is one thing that happened: the JSON body of a delivery.
//
// An Event never carries a secret, password or token (access, refresh, ID
// or device token), in any field: the sender drops any Data key whose name
// contains "secret", "password" or "token".
type Event struct {
	// ID is unique per event and the same on every delivery of it: every
	// retry, from any node. It is also the webhook-id header of its
	// deliveries, so receivers de-duplicate on it.
	ID string `json:"id"`
	// Type is one of the constants above, such as GuestCreated. Receivers
	// should ignore types they do not know: new ones may be added.
	Type string `json:"type"`
	// Time is when it happened, in UTC (RFC 3339 with fractional seconds
	// in JSON). It is not the webhook-timestamp of a delivery, which is
	// when that attempt was signed.
	Time time.Time `json:"time"`
	// UserID is the user it is about, when there is one.
	UserID string `json:"user_id,omitempty"`
	// ClientID is the OAuth client it happened through, when there is one.
	ClientID string `json:"client_id,omitempty"`
	// Data holds the rest, such as old_name and new_name for an upgrade,
	// cause for a revocation, or client_ip. Decoded from JSON, numbers are
	// float64.
	Data map[string]any `json:"data,omitempty"`
}

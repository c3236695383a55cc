package model

import (
	"encoding/json"
	"time"
)

// Passkey is a WebAuthn credential (a passkey) a user signs in with.
type Passkey struct {
	// ID is the credential id, base64url without padding; credential ids
	// are unique across users.
	ID     string `json:"id"`
	UserID string `json:"user_id"`
	// Name is the user's label for it ("work laptop"); may be empty.
	Name       string    `json:"name,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	// Credential is the WebAuthn credential record as the accounts
	// package encodes it (public key, signature counter, backup flags,
	// transports); the store does not read it.
	Credential json.RawMessage `json:"credential"`
}

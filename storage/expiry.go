package storage

// Ephemeral reports whether u has no credential that outlives its sessions
// and device key: a guest, or a normal user who never set a password (a
// name-only upgrade). Ephemeral users expire like guests, after the guest
// idle TTL or once orphaned, unless kept. This is the one place the rule
// lives: the store's expiry indexes, the prune re-check and the keep header
// all use it.
func (u *User) Ephemeral() bool { return u.IsAnonymous() || u.PasswordHash == "" }

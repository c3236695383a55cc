package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/guestauth/caddy-guestauth/storage"
)

// Username rules: after trimming, MinNameLength to MaxNameLength characters
// of letters, digits and . _ @ -, starting with a letter or digit. The
// guest_ prefix is reserved for generated guest names.
const (
	MinNameLength        = 3
	MaxNameLength        = 64
	MaxDisplayNameLength = 100
)

// Profile error codes (the HTTP layer maps them to statuses).
const (
	CodeInvalidName     = "invalid_name"
	CodeNameTaken       = "name_taken"
	CodeInvalidPassword = "invalid_password"
	CodeWrongPassword   = "wrong_password"
	CodeConflict        = "conflict"
)

// ValidateName checks a new username (already trimmed).
func ValidateName(name string) error {
	if n := len(name); n < MinNameLength || n > MaxNameLength {
		return refuse(CodeInvalidName, "A username must be %d to %d characters.", MinNameLength, MaxNameLength)
	}
	if strings.HasPrefix(strings.ToLower(name), storage.GuestNamePrefix) {
		return refuse(CodeInvalidName, "Usernames starting with %q are reserved for guests.", storage.GuestNamePrefix)
	}
	for i, c := range name {
		ok := c < utf8.RuneSelf && (unicode.IsLetter(c) || unicode.IsDigit(c))
		if i > 0 && (c == '.' || c == '_' || c == '@' || c == '-') {
			ok = true
		}
		if !ok {
			return refuse(CodeInvalidName, "A username may use letters, digits and . _ @ - and must start with a letter or digit.")
		}
	}
	return nil
}

// ProfileUpdate is a partial update: nil fields are left unchanged.
type ProfileUpdate struct {
	Name        *string
	DisplayName *string
	Password    *string
	// OldPassword must be the current password when changing a password the
	// user already has, so a stolen access token cannot take the account.
	OldPassword *string
	// ClientIP keys the per-IP limits on this request (Caddy's client IP).
	ClientIP string
}

// UpdateResult says what an update did.
type UpdateResult struct {
	User     *storage.User
	Upgraded bool   // tag went from guest-user to normal-user
	OldName  string // the name before the update
	// EndedSessions counts the other sessions ended by a password change.
	EndedSessions int
}

// UpdateProfile applies upd for the identity's user. A new name not starting
// with guest_, or any password, upgrades a guest to normal-user; the user id
// never changes. Changing an existing password ends the user's other sessions.
func (s *Service) UpdateProfile(ctx context.Context, id *Identity, upd ProfileUpdate) (*UpdateResult, error) {
	if upd.Name == nil && upd.Password == nil && upd.DisplayName == nil {
		return nil, refuse(CodeInvalidRequest, "Give a name, a password or a display name to change.")
	}
	cur := id.User
	var name, display string
	changeName := false
	if upd.Name != nil {
		name = strings.TrimSpace(*upd.Name)
		// Sending one's current name (even guest_...) is not a change.
		if name != cur.Name {
			if err := ValidateName(name); err != nil {
				return nil, err
			}
			changeName = true
		}
	}
	if upd.DisplayName != nil {
		display = strings.TrimSpace(*upd.DisplayName)
		if utf8.RuneCountInString(display) > MaxDisplayNameLength || !utf8.ValidString(display) || strings.IndexFunc(display, unicode.IsControl) >= 0 {
			return nil, refuse(CodeInvalidRequest, "A display name must be at most %d printable characters.", MaxDisplayNameLength)
		}
	}
	var newHash string
	if upd.Password != nil {
		if err := checkPasswordLength(*upd.Password); err != nil {
			return nil, refuse(CodeInvalidPassword, "A password must be %d to %d characters.", MinPasswordLength, MaxPasswordLength)
		}
		if cur.PasswordHash != "" {
			if err := s.checkOldPassword(cur, upd.OldPassword); err != nil {
				return nil, err
			}
		}
		// Hash outside any store transaction: it takes tens of milliseconds.
		h, err := HashPassword(*upd.Password, s.cfg.Argon2)
		if err != nil {
			return nil, err
		}
		newHash = h
	}

	now := s.now().UTC()
	res := &UpdateResult{OldName: cur.Name}
	u, err := s.store.UpdateUser(ctx, cur.ID, func(u *storage.User) error {
		// The password checked above must still be the current one.
		if u.PasswordHash != cur.PasswordHash {
			return errConflict
		}
		res.Upgraded = false
		if changeName {
			u.Name = name
		}
		if upd.DisplayName != nil {
			u.DisplayName = display
		}
		if newHash != "" {
			u.PasswordHash = newHash
		}
		// ValidateName refused guest_ names, so any name change upgrades.
		if u.Tag == storage.TagGuest && (changeName || newHash != "") {
			u.Tag = storage.TagNormal
			u.OrphanedAt = time.Time{}
			res.Upgraded = true
		}
		u.UpdatedAt = now
		return nil
	})
	switch {
	case errors.Is(err, storage.ErrNameTaken):
		return nil, refuse(CodeNameTaken, "The username %q is taken.", name)
	case errors.Is(err, errConflict):
		return nil, refuse(CodeConflict, "The account changed during this request; try again.")
	case errors.Is(err, storage.ErrNotFound):
		return nil, refuse(CodeInvalidGrant, "The user no longer exists.")
	case err != nil:
		return nil, err
	}
	res.User = u
	if newHash != "" && cur.PasswordHash != "" {
		n, err := s.store.DeleteUserSessions(ctx, u.ID, id.Session.ID)
		if err != nil {
			return nil, fmt.Errorf("ending other sessions: %w", err)
		}
		res.EndedSessions = n
	}
	return res, nil
}

var errConflict = errors.New("concurrent update")

// checkOldPassword verifies the current password, throttled per account
// like sign-in so it cannot be used to guess passwords.
func (s *Service) checkOldPassword(u *storage.User, old *string) error {
	key := "acct:" + storage.NameKey(u.Name)
	if wait := s.byAcct.Wait(key); wait > 0 {
		return &ThrottledError{Limit: LimitSignIn, RetryAfter: wait}
	}
	if old == nil || *old == "" {
		return refuse(CodeWrongPassword, "Changing the password needs the current one (old_password).")
	}
	ok, err := VerifyPassword(*old, u.PasswordHash)
	if err != nil {
		return err
	}
	if !ok {
		s.byAcct.Fail(key)
		return refuse(CodeWrongPassword, "The current password is incorrect.")
	}
	return nil
}

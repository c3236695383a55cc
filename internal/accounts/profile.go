package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Username rules: after trimming, MinNameLength to MaxNameLength characters
// of letters, digits and . _ @ -, starting with a letter or digit. The
// guest_ prefix is reserved for generated guest names.
const (
	MinNameLength        = 3
	MaxNameLength        = 64
	MaxDisplayNameLength = 100
	// NameCharacters says which characters a username may use, as
	// ValidateName's refusal and the sign-up page's hint put it.
	NameCharacters = "letters, digits and . _ @ -"
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
	if strings.HasPrefix(strings.ToLower(name), model.GuestNamePrefix) {
		return refuse(CodeInvalidName, "Usernames starting with %q are reserved for guests.", model.GuestNamePrefix)
	}
	for i, c := range name {
		ok := c < utf8.RuneSelf && (unicode.IsLetter(c) || unicode.IsDigit(c))
		if i > 0 && (c == '.' || c == '_' || c == '@' || c == '-') {
			ok = true
		}
		if !ok {
			return refuse(CodeInvalidName, "A username may use %s and must start with a letter or digit.", NameCharacters)
		}
	}
	return nil
}

// ProfileUpdate is a partial update: nil fields are left unchanged.
type ProfileUpdate struct {
	Name        *string
	DisplayName *string
	Password    *string
	// OldPassword must be the current password when changing the password
	// or the name of a user who has one, so a stolen access token cannot
	// take the account.
	OldPassword *string
	// ClientIP keys the per-IP limits on this request (Caddy's client IP).
	ClientIP string
	// Issuer is the iss of the token set re-issued after a password change
	// (UpdateProfile), or of the browser's new session (UpdateBrowserProfile).
	Issuer string
}

// UpdateResult says what an update did.
type UpdateResult struct {
	User     *model.User
	Upgraded bool   // tag went from guest-user to normal-user
	OldName  string // the name before the update
	// EndedSessions counts the other sessions ended by a password change.
	EndedSessions int
	// Tokens is the caller's new token set after a password change (its
	// session's refresh token was rotated, so the old one is dead); nil
	// otherwise, or when the session ended meanwhile. Never for a browser
	// session (UpdateBrowserProfile), which gets a new session instead.
	Tokens *TokenResponse

	newName string     // the name the update wrote
	events  []outcomes // to report
}

// DefaultReservedNames are names that would let a user pass for the site or
// its staff; the Caddy module reserves them unless configured otherwise.
var DefaultReservedNames = []string{
	"admin", "administrator", "root", "system", "support", "security",
	"postmaster", "webmaster", "hostmaster", "abuse", "noreply", "no-reply",
	"guest", "anonymous", "null", "nobody", "undefined",
	"help", "info", "staff", "moderator", "owner", "superuser", "sysadmin",
}

// Special entries of a configured reserved-name list.
const (
	ReservedDefault = "default" // stands for DefaultReservedNames
	ReservedOff     = "off"     // alone: reserve nothing
)

// ExpandReservedNames expands a configured list of reserved names: unset
// (nil) is the built-in list, `default` stands for it, `off` alone
// reserves nothing.
func ExpandReservedNames(names []string) []string {
	if names == nil {
		return DefaultReservedNames
	}
	var out []string
	for _, n := range names {
		switch n {
		case ReservedOff:
		case ReservedDefault:
			out = append(out, DefaultReservedNames...)
		default:
			out = append(out, n)
		}
	}
	return out
}

// nameRules are the limits on username changes.
type nameRules struct {
	byUser, byIP *Throttle
	reserved     map[string]bool
}

func newNameRules(cfg Config, mk func(string, Limit) *Throttle) nameRules {
	r := nameRules{
		byUser:   mk(ThrottleNameUser, cfg.NameUserLimit),
		byIP:     mk(ThrottleNameIP, cfg.NameIPLimit),
		reserved: make(map[string]bool, len(cfg.ReservedNames)),
	}
	for _, n := range cfg.ReservedNames {
		r.reserved[model.NameKey(n)] = true
	}
	return r
}

// admitNameChange spends one try of the user's and of the client IP's
// budget of name changes.
func (s *Service) admitNameChange(userID, clientIP string) error {
	if wait := s.names.byUser.Take(userID); wait > 0 {
		return s.throttled(LimitName, wait)
	}
	if wait := s.names.byIP.Take(clientIP); wait > 0 {
		return s.throttled(LimitName, wait)
	}
	return nil
}

// UpdateProfile applies upd for the identity's user. A new name not starting
// with guest_, or any password, upgrades a guest to normal-user; the user id
// never changes. Renaming is throttled, and needs the current password when
// the user has one; a taken or reserved name is refused before any password
// is hashed. Changing an existing password ends the user's other sessions
// and rotates the caller's session, whose new tokens are in the result.
func (s *Service) UpdateProfile(ctx context.Context, id *Identity, upd ProfileUpdate) (*UpdateResult, error) {
	_, res, err := s.updateProfile(ctx, id, upd, false)
	if err != nil {
		return nil, err
	}
	s.observeAll(ctx, res.events...)
	return res, nil
}

// UpdateBrowserProfile is UpdateProfile for a browser session (id is the
// browser's identity): an update that raises the browser's privilege — a
// guest's upgrade, a password set or changed — first gives the browser a
// new session under upd.Issuer (RotateBrowserSession: the old handle ends
// at once), then writes; the other sessions end on a password change as
// with UpdateProfile. login is the browser's new session: when it is not
// nil, the caller sends its cookie whatever err says, since the session
// before has ended (an update refused after the rotation, such as a name
// taken meanwhile, leaves the user as it was with the new session).
func (s *Service) UpdateBrowserProfile(ctx context.Context, id *Identity, upd ProfileUpdate) (login *BrowserLogin, res *UpdateResult, err error) {
	login, res, err = s.updateProfile(ctx, id, upd, true)
	if err != nil {
		return login, nil, err
	}
	s.observeAll(ctx, res.events...)
	return login, res, nil
}

// updateProfile is UpdateProfile, and UpdateBrowserProfile when browser;
// login is the browser's new session when it was rotated (even with err).
func (s *Service) updateProfile(ctx context.Context, id *Identity, upd ProfileUpdate, browser bool) (login *BrowserLogin, _ *UpdateResult, _ error) {
	if upd.Name == nil && upd.Password == nil && upd.DisplayName == nil {
		return login, nil, refuse(CodeInvalidRequest, "Give a name, a password or a display name to change.")
	}
	cur := id.User
	var name, display string
	changeName := false
	if upd.Name != nil {
		name = strings.TrimSpace(*upd.Name)
		// Sending one's current name (even guest_...) is not a change.
		if name != cur.Name {
			if err := ValidateName(name); err != nil {
				return login, nil, err
			}
			// A case change of one's own name claims nothing new.
			if key := model.NameKey(name); s.names.reserved[key] && key != model.NameKey(cur.Name) {
				return login, nil, refuse(CodeInvalidName, "The username %q is reserved.", name)
			}
			changeName = true
		}
	}
	if upd.DisplayName != nil {
		display = strings.TrimSpace(*upd.DisplayName)
		if utf8.RuneCountInString(display) > MaxDisplayNameLength || !utf8.ValidString(display) || strings.IndexFunc(display, unicode.IsControl) >= 0 {
			return login, nil, refuse(CodeInvalidRequest, "A display name must be at most %d printable characters.", MaxDisplayNameLength)
		}
	}
	if upd.Password != nil {
		if err := checkPasswordLength(*upd.Password); err != nil {
			return login, nil, refuse(CodeInvalidPassword, "A password must be %d to %d characters.", MinPasswordLength, MaxPasswordLength)
		}
	}
	if changeName {
		if err := s.admitNameChange(cur.ID, upd.ClientIP); err != nil {
			return login, nil, err
		}
		// Cheap early answer; the store re-checks in its transaction.
		owner, err := s.store.GetUserByName(ctx, name)
		switch {
		case err == nil && owner.ID != cur.ID:
			return login, nil, refuse(CodeNameTaken, "The username %q is taken.", name)
		case err != nil && !errors.Is(err, model.ErrNotFound):
			return login, nil, err
		}
	}
	if cur.PasswordHash != "" && (changeName || upd.Password != nil) {
		if upd.Password == nil && (upd.OldPassword == nil || *upd.OldPassword == "") {
			return login, nil, refuse(CodeWrongPassword, "Changing the username needs the current password (oldPassword).")
		}
		if err := s.checkOldPassword(ctx, id, upd.OldPassword, upd.ClientIP); err != nil {
			return login, nil, err
		}
	}
	var newHash string
	if upd.Password != nil {
		// Hash outside any store transaction: it takes tens of milliseconds.
		h, err := s.hashNewPassword(ctx, cur.Name, *upd.Password, upd.ClientIP)
		if err != nil {
			return login, nil, err
		}
		newHash = h
	}

	// A browser's privilege is raised on a session nobody can have known
	// before: a new one, before the write (RotateBrowserSession).
	if browser && (newHash != "" || (cur.IsAnonymous() && changeName)) {
		l, err := s.RotateBrowserSession(ctx, id, cur, upd.Issuer)
		if errors.Is(err, model.ErrNotFound) {
			return nil, nil, refuse(CodeInvalidGrant, "The user no longer exists.")
		}
		if err != nil {
			return nil, nil, err
		}
		login, id = l, &Identity{User: cur, Session: l.Session}
	}

	now := s.now().UTC()
	res := &UpdateResult{OldName: cur.Name}
	// guest.upgraded is stored with the update that upgrades.
	upgraded := func(storage.TxResult) []events.Event {
		if !res.Upgraded {
			return nil
		}
		return []events.Event{{Type: events.GuestUpgraded, UserID: cur.ID, ClientID: id.Session.ClientID, Data: map[string]any{"old_name": res.OldName, "new_name": res.newName, "method": MethodPassword}}}
	}
	up := s.withEvents(upgraded)
	u, err := s.store.UpdateUser(ctx, cur.ID, func(u *model.User) error {
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
		if u.Tag == model.TagGuest && (changeName || newHash != "") {
			u.Tag = model.TagNormal
			u.OrphanedAt = time.Time{}
			res.Upgraded = true
			up.bornAt(u)
		}
		res.newName = u.Name
		u.UpdatedAt = now
		return nil
	}, up.tx())
	switch {
	case errors.Is(err, model.ErrNameTaken):
		return login, nil, refuse(CodeNameTaken, "The username %q is taken.", name)
	case errors.Is(err, errConflict):
		return login, nil, refuse(CodeConflict, "The account changed during this request; try again.")
	case errors.Is(err, model.ErrNotFound):
		return login, nil, refuse(CodeInvalidGrant, "The user no longer exists.")
	case err != nil:
		return login, nil, err
	}
	res.User = u
	res.events = []outcomes{up.stored(storage.TxResult{})}
	if newHash != "" && cur.PasswordHash != "" {
		dp := s.withEvents(revoked(u.ID, "password_changed"))
		n, err := s.store.DeleteUserSessions(ctx, u.ID, id.Session.ID, dp.tx())
		if err != nil {
			return login, nil, fmt.Errorf("ending other sessions: %w", err)
		}
		res.EndedSessions = n
		res.events = append(res.events, dp.stored(storage.TxResult{Ended: n}))
		if !browser {
			if res.Tokens, err = s.reissue(ctx, upd.Issuer, id.Session.ID, u, now); err != nil {
				return login, nil, fmt.Errorf("re-issuing tokens: %w", err)
			}
		}
	}
	return login, res, nil
}

// reissue rotates the caller's session after a password change: the next
// generation (the old refresh token is dead, and presenting it now counts
// as reuse), a new auth_time (the current password was just proved) and a
// fresh token set. The caller's current access token stays valid until it
// expires, like any access token of a live session. A session that ended
// meanwhile gets no tokens (nil, nil).
func (s *Service) reissue(ctx context.Context, issuer, sessionID string, u *model.User, now time.Time) (*TokenResponse, error) {
	sess, err := s.store.UpdateSession(ctx, sessionID, func(cur *model.Session) error {
		cur.Generation++
		cur.AuthTime = now
		cur.LastUsedAt = now
		cur.IdleExpiresAt = now.Add(s.cfg.SessionIdle)
		return nil
	}, nil)
	if errors.Is(err, model.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.mint(issuer, sess.ClientID, u, sess, now)
}

var errConflict = errors.New("concurrent update")

// checkOldPassword verifies the current password of id's user. Its guesses
// draw on the budget of the session making them (DeviceLimit), so failed
// sign-ins elsewhere cannot lock the owner out of changing the password,
// and on the account's and client IP's hash budgets (see budget).
func (s *Service) checkOldPassword(ctx context.Context, id *Identity, old *string, clientIP string) error {
	if old == nil || *old == "" {
		return refuse(CodeWrongPassword, "Changing the password needs the current one (old_password).")
	}
	ok, err := s.proveCurrentPassword(ctx, id, *old, clientIP)
	if err != nil {
		return err
	}
	if !ok {
		return refuse(CodeWrongPassword, "The current password is incorrect.")
	}
	return nil
}

// proveCurrentPassword checks pw against the current password of id's user,
// a signed-in user proving it again (a password change, a deletion). Its
// guesses draw on the budget of the session making them (DeviceLimit), and
// on the account's and client IP's hash budgets, spent before the hash. A
// right password gives the session's guesses back.
func (s *Service) proveCurrentPassword(ctx context.Context, id *Identity, pw, clientIP string) (bool, error) {
	guesses := budget{t: s.byDevice, key: "sess:" + id.Session.ID}
	if err := s.admit(ctx, guesses, s.accountHashes(id.User.Name), budget{t: s.byIP, key: ipKey(clientIP)}); err != nil {
		return false, err
	}
	ok, err := s.verifyPassword(pw, id.User.PasswordHash)
	if err != nil || !ok {
		return false, err
	}
	guesses.reset(ctx)
	return true, nil
}

// hashNewPassword hashes a new password of the user named name, within the
// account's and the client IP's hash budgets.
func (s *Service) hashNewPassword(ctx context.Context, name, pw, clientIP string) (string, error) {
	if err := s.admit(ctx, s.accountHashes(name), budget{t: s.byIP, key: ipKey(clientIP)}); err != nil {
		return "", err
	}
	return s.hashPassword(pw)
}

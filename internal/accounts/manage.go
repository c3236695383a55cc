package accounts

// User management for a trusted server-side client (a client with
// manage_users, through Casdoor's user API): reading users, creating named
// users, renaming, setting display names and passwords, deleting. The
// client is the site's own backend, so no current password is needed; the
// rules on names and passwords, the name-change budget of the user, and
// the hash budgets (of the account and of the client's address) apply as
// they do to the user. Every write reports its event with the client's id.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Organization is the owner of every user, as Casdoor's user API and the
// tokens' owner claim name it.
func (s *Service) Organization() string { return s.cfg.Organization }

// UserByName reads the user named name (compared as model.NameKey).
func (s *Service) UserByName(ctx context.Context, name string) (*model.User, error) {
	return s.store.GetUserByName(ctx, name)
}

// UserByID reads the user with id.
func (s *Service) UserByID(ctx context.Context, id string) (*model.User, error) {
	return s.store.GetUser(ctx, id)
}

// ListUsers returns up to limit users with ids after the given one, in id
// (creation) order, optionally only those with tag; next is "" on the
// last page.
func (s *Service) ListUsers(ctx context.Context, after, tag string, limit int) ([]model.User, string, error) {
	return s.store.ListUsers(ctx, after, tag, limit)
}

// CountUsers counts the users, or those with tag.
func (s *Service) CountUsers(ctx context.Context, tag string) (int64, error) {
	st, err := s.store.Stats(ctx)
	if err != nil {
		return 0, err
	}
	switch tag {
	case model.TagGuest:
		return st.LiveGuests, nil
	case model.TagNormal:
		return st.NormalUsers, nil
	}
	return st.Users, nil
}

// UserChange is a change to a user by a managing client: nil fields are
// left as they are.
type UserChange struct {
	Name        *string
	DisplayName *string
	Password    *string
	// OldPassword, when set and not empty, must be the user's current
	// password (an app relaying its user's change-password form); a
	// managing client may otherwise set a password without it.
	OldPassword *string
	// ClientID is the managing client; ClientIP keys the hash budget of
	// its address.
	ClientID, ClientIP string
}

// ManageUpdate applies ch to the user with id, as the managing client
// ch.ClientID asks. As for a user's own update, a new name (not guest_...)
// or a password upgrades a guest to normal-user, keeping its id, and is
// reported as guest.upgraded; a taken or reserved name is refused before
// any hash, and a rename spends the user's name-change budget. Replacing
// an existing password ends all the user's sessions (session.revoked,
// cause password_changed). Changed reports whether anything changed.
func (s *Service) ManageUpdate(ctx context.Context, id string, ch UserChange) (u *model.User, changed bool, err error) {
	cur, err := s.store.GetUser(ctx, id)
	if err != nil {
		return nil, false, err
	}
	var name, display string
	changeName := false
	if ch.Name != nil {
		name = strings.TrimSpace(*ch.Name)
		if name != cur.Name {
			if err := s.checkNewName(name, cur.Name); err != nil {
				return nil, false, err
			}
			changeName = true
		}
	}
	changeDisplay := false
	if ch.DisplayName != nil {
		if display, err = checkDisplayName(*ch.DisplayName); err != nil {
			return nil, false, err
		}
		changeDisplay = display != cur.DisplayName
	}
	if ch.Password != nil {
		if err := checkPasswordLength(*ch.Password); err != nil {
			return nil, false, refuse(CodeInvalidPassword, "A password must be %d to %d characters.", MinPasswordLength, MaxPasswordLength)
		}
	}
	if !changeName && !changeDisplay && ch.Password == nil {
		return cur, false, nil
	}
	if changeName {
		// The user's budget only: the client's address is the app's
		// server, where every user's renames come from.
		if wait := s.names.byUser.Take(cur.ID); wait > 0 {
			return nil, false, s.throttled(LimitName, wait)
		}
		if err := s.nameFree(ctx, name, cur.ID); err != nil {
			return nil, false, err
		}
	}
	if ch.OldPassword != nil && *ch.OldPassword != "" && cur.PasswordHash != "" {
		if err := s.checkPasswordOf(ctx, cur, *ch.OldPassword, ch.ClientIP); err != nil {
			return nil, false, err
		}
	}
	var newHash string
	if ch.Password != nil {
		if newHash, err = s.hashNewPassword(ctx, cur.Name, *ch.Password, ch.ClientIP); err != nil {
			return nil, false, err
		}
	}

	now := s.now().UTC()
	upgraded, newName := false, ""
	up := s.withEvents(func(storage.TxResult) []events.Event {
		if !upgraded {
			return nil
		}
		return []events.Event{{Type: events.GuestUpgraded, UserID: cur.ID, ClientID: ch.ClientID, Data: map[string]any{"old_name": cur.Name, "new_name": newName, "method": MethodPassword}}}
	})
	u, err = s.store.UpdateUser(ctx, cur.ID, func(u *model.User) error {
		// The password checked above must still be the current one.
		if u.PasswordHash != cur.PasswordHash {
			return errConflict
		}
		upgraded = false
		if changeName {
			u.Name = name
		}
		if changeDisplay {
			u.DisplayName = display
		}
		if newHash != "" {
			u.PasswordHash = newHash
		}
		if u.Tag == model.TagGuest && (changeName || newHash != "") {
			u.Tag = model.TagNormal
			u.OrphanedAt = time.Time{}
			upgraded = true
			up.bornAt(u)
		}
		newName = u.Name
		u.UpdatedAt = now
		return nil
	}, up.tx())
	if err := updateError(err, name); err != nil {
		return nil, false, err
	}
	writes := []outcomes{up.stored(storage.TxResult{})}
	if newHash != "" && cur.PasswordHash != "" {
		dp := s.withEvents(revoked(u.ID, "password_changed"))
		n, err := s.store.DeleteUserSessions(ctx, u.ID, "", dp.tx())
		if err != nil {
			s.observeAll(ctx, writes...)
			return nil, false, fmt.Errorf("ending the user's sessions: %w", err)
		}
		writes = append(writes, dp.stored(storage.TxResult{Ended: n}))
	}
	s.observeAll(ctx, writes...)
	return u, true, nil
}

// ManageCreate creates a named user (normal-user) for the managing client
// clientID, with a password when password is not nil. A user without a
// password has no credential that outlives its sessions, so it would
// expire like a guest: it is created kept. Reports user.created.
func (s *Service) ManageCreate(ctx context.Context, name, displayName string, password *string, clientID, clientIP string) (*model.User, error) {
	name = strings.TrimSpace(name)
	if err := s.checkNewName(name, ""); err != nil {
		return nil, err
	}
	display, err := checkDisplayName(displayName)
	if err != nil {
		return nil, err
	}
	if password != nil {
		if err := checkPasswordLength(*password); err != nil {
			return nil, refuse(CodeInvalidPassword, "A password must be %d to %d characters.", MinPasswordLength, MaxPasswordLength)
		}
	}
	if err := s.nameFree(ctx, name, ""); err != nil {
		return nil, err
	}
	var hash string
	if password != nil {
		if hash, err = s.hashNewPassword(ctx, name, *password, clientIP); err != nil {
			return nil, err
		}
	}
	now := s.now().UTC()
	uid, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	u := &model.User{
		ID: uid.String(), Name: name, DisplayName: display, Tag: model.TagNormal, PasswordHash: hash,
		CreatedAt: now, UpdatedAt: now, Kept: hash == "",
	}
	p := s.withEvents(created(events.Event{Type: events.UserCreated, ClientID: clientID, Data: map[string]any{"name": name, "via": "api"}}))
	if err := s.store.CreateUser(ctx, u, nil, nil, p.tx()); err != nil {
		if errors.Is(err, model.ErrNameTaken) {
			return nil, refuse(CodeNameTaken, "The username %q is taken.", name)
		}
		return nil, fmt.Errorf("storing user: %w", err)
	}
	s.observeAll(ctx, p.stored(storage.TxResult{Created: []model.User{*u}}))
	return u, nil
}

// ManageDelete deletes the user with id for the managing client clientID,
// reporting user.deleted (cause "api").
func (s *Service) ManageDelete(ctx context.Context, id, clientID string) (*model.User, error) {
	return s.deleteUser(ctx, id, "api", clientID)
}

// checkNewName checks a name a user is to take (already trimmed): the
// username rules and the reserved names (a case change of one's own name,
// old, claims nothing new).
func (s *Service) checkNewName(name, old string) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	if key := model.NameKey(name); s.names.reserved[key] && key != model.NameKey(old) {
		return refuse(CodeInvalidName, "The username %q is reserved.", name)
	}
	return nil
}

// nameFree refuses a name another user than id holds: a cheap early
// answer, before any hash; the store checks again in its transaction.
func (s *Service) nameFree(ctx context.Context, name, id string) error {
	owner, err := s.store.GetUserByName(ctx, name)
	switch {
	case err == nil && owner.ID != id:
		return refuse(CodeNameTaken, "The username %q is taken.", name)
	case err != nil && !errors.Is(err, model.ErrNotFound):
		return err
	}
	return nil
}

// checkDisplayName trims and checks a display name.
func checkDisplayName(d string) (string, error) {
	d = strings.TrimSpace(d)
	if utf8.RuneCountInString(d) > MaxDisplayNameLength || !utf8.ValidString(d) || strings.IndexFunc(d, unicode.IsControl) >= 0 {
		return "", refuse(CodeInvalidRequest, "A display name must be at most %d printable characters.", MaxDisplayNameLength)
	}
	return d, nil
}

// checkPasswordOf verifies u's current password for a managing client,
// within the account's guess and hash budgets and the client address's
// hash budget, as a sign-in is.
func (s *Service) checkPasswordOf(ctx context.Context, u *model.User, pw, clientIP string) error {
	guesses := s.accountGuesses(u.Name)
	if err := s.admit(ctx, guesses, s.accountHashes(u.Name), budget{t: s.byIP, key: ipKey(clientIP)}); err != nil {
		return err
	}
	ok, err := s.verifyPassword(pw, u.PasswordHash)
	if err != nil {
		return err
	}
	if !ok {
		return refuse(CodeWrongPassword, "The current password is incorrect.")
	}
	guesses.reset(ctx)
	return nil
}

// updateError maps a store's UpdateUser error to the refusal the caller
// is told.
func updateError(err error, name string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, model.ErrNameTaken):
		return refuse(CodeNameTaken, "The username %q is taken.", name)
	case errors.Is(err, errConflict):
		return refuse(CodeConflict, "The account changed during this request; try again.")
	case errors.Is(err, model.ErrNotFound):
		return refuse(CodeInvalidGrant, "The user no longer exists.")
	}
	return err
}

package accounts

// Sign-in with another provider (OpenID Connect): the caller verifies the
// provider's ID token and hands over the issuer and subject it vouched
// for; the Service decides whose account that is. An identity (issuer +
// subject, never an email address) linked to an account signs that
// account in, merging the browser's guest into it; one linked to nobody
// joins the browser's current user (a guest becomes a member with the
// same id) or, with no session, becomes a new member.

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// FlowProvider is the flow state of a sign-in waiting for a provider's
// callback (its state parameter is the handle).
const FlowProvider = "provider"

// Refusal codes of provider sign-ins.
const (
	CodeIdentityTaken = "identity_taken"
	CodeLastWayIn     = "last_way_in"
)

// ProviderIdentity is an identity another provider vouched for, in an ID
// token the caller verified.
type ProviderIdentity struct {
	// Provider is the configured provider's name.
	Provider string
	Issuer   string
	Subject  string
	// PreferredUsername (the preferred_username claim) becomes a new
	// member's username when it is a valid username nobody has.
	PreferredUsername string
}

// ProviderOutcome says what a provider sign-in did.
type ProviderOutcome int

// The outcomes of ProviderSignIn.
const (
	// ProviderSignedIn: the identity's account was signed in (a guest
	// session before it was merged into it).
	ProviderSignedIn ProviderOutcome = iota + 1
	// ProviderUpgraded: the browser's guest became a member, same id.
	ProviderUpgraded
	// ProviderCreated: a new member, for a browser without a session.
	ProviderCreated
	// ProviderLinked: linked to the browser's signed-in member.
	ProviderLinked
)

// ProviderSignIn ends a provider sign-in for a browser whose session was
// prev (nil: none) with a new browser session under issuer
// (RotateBrowserSession, so prev's handle is no session any more):
//   - an identity linked to an account signs that account in (a guest
//     session is merged into it, as on password sign-in);
//   - one linked to nobody is linked to prev's user, and a guest becomes a
//     member with the same id, named after PreferredUsername when free;
//   - without a session, a new member is created (under the guest
//     creation limits) and linked.
func (s *Service) ProviderSignIn(ctx context.Context, prev *Identity, issuer string, pid ProviderIdentity, clientIP string) (*BrowserLogin, ProviderOutcome, error) {
	if pid.Issuer == "" || pid.Subject == "" {
		return nil, 0, errors.New("provider sign-in without an issuer and subject")
	}
	// Twice at most: a link made by a concurrent request between the
	// look-up and the write is found on the second pass.
	for attempt := 0; ; attempt++ {
		l, err := s.store.GetIdentityLink(ctx, pid.Issuer, pid.Subject)
		if err == nil {
			u, err := s.store.GetUser(ctx, l.UserID)
			if err != nil {
				return nil, 0, err
			}
			login, err := s.RotateBrowserSession(ctx, prev, u, issuer)
			return login, ProviderSignedIn, err
		}
		if !errors.Is(err, model.ErrNotFound) {
			return nil, 0, err
		}
		login, outcome, err := s.providerJoin(ctx, prev, issuer, pid, clientIP)
		if errors.Is(err, model.ErrExists) && attempt == 0 {
			if login != nil {
				prev = &Identity{User: login.User, Session: login.Session}
			}
			continue
		}
		return login, outcome, err
	}
}

// providerJoin links an unlinked identity to prev's user, or to a new
// member without prev. model.ErrExists: linked meanwhile; the login
// returned then is the browser's session now (prev's rotated, or the
// new user's, which was deleted again and so holds nothing).
func (s *Service) providerJoin(ctx context.Context, prev *Identity, issuer string, pid ProviderIdentity, clientIP string) (*BrowserLogin, ProviderOutcome, error) {
	if prev == nil {
		p := s.browserGuestEvents(ctx)
		login, err := s.createBrowserGuest(ctx, issuer, clientIP, p.tx())
		if err != nil {
			return nil, 0, err
		}
		s.observeAll(ctx, p.stored(storage.TxResult{Created: []model.User{*login.User}}))
		u, err := s.linkIdentity(ctx, login.User.ID, pid, "signin")
		if err != nil {
			if _, derr := s.DeleteUser(context.WithoutCancel(ctx), login.User.ID, "signup_refused"); derr != nil && !errors.Is(derr, model.ErrNotFound) {
				err = errors.Join(err, derr)
			}
			return nil, 0, err
		}
		login.User = u
		return login, ProviderCreated, nil
	}
	// A new session before the write that adds a way in.
	login, err := s.RotateBrowserSession(ctx, prev, prev.User, issuer)
	if err != nil {
		return nil, 0, err
	}
	outcome := ProviderLinked
	if prev.User.IsAnonymous() {
		outcome = ProviderUpgraded
	}
	u, err := s.linkIdentity(ctx, prev.User.ID, pid, "signin")
	if err != nil {
		return login, 0, err
	}
	login.User = u
	return login, outcome, nil
}

// LinkProvider links an identity to id's user (the account page's "link"),
// rotating its browser session first (a new way in is a privilege change).
// An identity linked to any account, this one included, is refused
// (CodeIdentityTaken): accounts are never merged this way.
func (s *Service) LinkProvider(ctx context.Context, id *Identity, issuer string, pid ProviderIdentity) (*BrowserLogin, error) {
	if id.User.IsAnonymous() {
		login, _, err := s.ProviderSignIn(ctx, id, issuer, pid, "")
		return login, err
	}
	if _, err := s.store.GetIdentityLink(ctx, pid.Issuer, pid.Subject); err == nil {
		return nil, refuse(CodeIdentityTaken, "That %s account is already linked to an account here.", pid.Provider)
	} else if !errors.Is(err, model.ErrNotFound) {
		return nil, err
	}
	login, err := s.RotateBrowserSession(ctx, id, id.User, issuer)
	if err != nil {
		return nil, err
	}
	u, err := s.linkIdentity(ctx, id.User.ID, pid, "link")
	if errors.Is(err, model.ErrExists) {
		return login, refuse(CodeIdentityTaken, "That %s account is already linked to an account here.", pid.Provider)
	}
	if err != nil {
		return login, err
	}
	login.User = u
	return login, nil
}

// ProviderLinks lists the identities linked to a user, oldest first.
func (s *Service) ProviderLinks(ctx context.Context, userID string) ([]model.IdentityLink, error) {
	return s.store.ListIdentityLinks(ctx, userID)
}

// UnlinkProvider removes one of id's user's links, unless it is the last
// way to sign in (hasWayIn: CodeLastWayIn). model.ErrNotFound: the user has no such link.
func (s *Service) UnlinkProvider(ctx context.Context, id *Identity, issuerURL, subject string) error {
	var provider string
	if l, err := s.store.GetIdentityLink(ctx, issuerURL, subject); err == nil && l.UserID == id.User.ID {
		provider = l.Provider
	}
	p := s.withEvents(one(events.Event{Type: events.IdentityUnlinked, UserID: id.User.ID, Data: map[string]any{"provider": provider, "issuer": issuerURL}}))
	err := s.store.UnlinkIdentity(ctx, id.User.ID, issuerURL, subject, func(u *model.User) error {
		if !s.hasWayIn(u) {
			return refuse(CodeLastWayIn, "This is your only way to sign in: add a password, a passkey or another provider first.")
		}
		return nil
	}, p.tx())
	if err != nil {
		return err
	}
	s.observeAll(ctx, p.stored(storage.TxResult{}))
	return nil
}

// hasWayIn reports whether u, as it would be saved, can still sign in: a
// password, a passkey, a linked provider, or a verified email address
// when the site sends mail (without a mailer no sign-in link reaches it).
// The account page's removals (UnlinkProvider, Passkeys.Remove) keep one.
func (s *Service) hasWayIn(u *model.User) bool {
	return u.PasswordHash != "" || u.Passkeys > 0 || u.Identities > 0 || (u.EmailVerified && s.EmailEnabled())
}

// linkIdentity stores the link of pid to userID, upgrading a guest (named
// after PreferredUsername when valid and free, else a generated name),
// with identity.linked (and guest.upgraded) in the same write.
func (s *Service) linkIdentity(ctx context.Context, userID string, pid ProviderIdentity, via string) (*model.User, error) {
	now := s.now().UTC()
	name := strings.TrimSpace(pid.PreferredUsername)
	if ValidateName(name) != nil {
		name = ""
	}
	for attempt := 0; ; attempt++ {
		if name == "" {
			var err error
			if name, err = generatedName(); err != nil {
				return nil, err
			}
		}
		var upgraded bool
		var oldName, newName string
		p := s.withEvents(func(storage.TxResult) []events.Event {
			evs := []events.Event{{Type: events.IdentityLinked, UserID: userID, Data: map[string]any{"provider": pid.Provider, "issuer": pid.Issuer, "via": via}}}
			if upgraded {
				evs = append(evs, events.Event{Type: events.GuestUpgraded, UserID: userID, Data: map[string]any{"old_name": oldName, "new_name": newName, "method": MethodProvider}})
			}
			return evs
		})
		l := model.IdentityLink{Issuer: pid.Issuer, Subject: pid.Subject, UserID: userID, Provider: pid.Provider, LinkedAt: now}
		u, err := s.store.LinkIdentity(ctx, l, func(u *model.User) error {
			upgraded = false
			if u.Tag != model.TagGuest {
				return nil
			}
			upgraded, oldName = true, u.Name
			p.bornAt(u)
			u.Tag, u.Name, u.OrphanedAt, u.UpdatedAt = model.TagNormal, name, time.Time{}, now
			newName = name
			return nil
		}, p.tx())
		if errors.Is(err, model.ErrNameTaken) && attempt < 3 {
			name = ""
			continue
		}
		if err != nil {
			return nil, err
		}
		s.observeAll(ctx, p.stored(storage.TxResult{}))
		return u, nil
	}
}

// generatedName is a member's username when the provider's is unusable:
// "user-" and 10 random characters, which the user can change.
func generatedName() (string, error) {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, 10)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "user-" + string(b), nil
}

// SessionIdentity is the user userID with its session sessionID, still
// running (model.ErrNotFound otherwise): the guest of an API client's
// provider sign-in (protocol.ProviderHandoff), found again when the
// browser comes back from the provider. The values must not be modified.
func (s *Service) SessionIdentity(ctx context.Context, userID, sessionID string) (*Identity, error) {
	u, sess, err := s.store.Identity(ctx, userID, sessionID)
	if err != nil {
		return nil, err
	}
	if !s.now().Before(sess.EndsAt()) {
		return nil, model.ErrNotFound
	}
	return &Identity{User: u, Session: sess}, nil
}

package accounts

// Passkeys (WebAuthn, github.com/go-webauthn/webauthn): a browser user
// saves a passkey (a guest becomes a member with the same id, no password
// needed) and signs in with it later, without typing a name (discoverable
// credentials). Ceremony state is a flow state, so any process sharing the
// store finishes a ceremony another began; it is taken once, so an
// assertion or attestation is never accepted twice.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Flow state kinds of the passkey ceremonies.
const (
	FlowPasskeyRegister = "passkey-register"
	FlowPasskeySignIn   = "passkey-signin"
)

// Passkey limits.
const (
	// PasskeyCeremonyTTL is how long a begun ceremony can be finished
	// (the browser's own timeout is the same).
	PasskeyCeremonyTTL = 5 * time.Minute
	// MaxPasskeyResponse bounds an authenticator's response (JSON); real
	// ones are a few KiB at most.
	MaxPasskeyResponse = 64 << 10
	// MaxPasskeyNameLength bounds a passkey's label, in characters.
	MaxPasskeyNameLength = 64
	// MaxPasskeysPerUser bounds one user's passkeys.
	MaxPasskeysPerUser = 20
)

// CodeLastSignIn refuses removing a user's last way to sign in.
const CodeLastSignIn = "last_sign_in"

// PasskeyStore is what passkeys need of the store (storage.PasskeyStore
// documents the methods).
type PasskeyStore interface {
	AddPasskey(ctx context.Context, p *model.Passkey, fn func(u *model.User) error, ev storage.Events) (*model.User, error)
	GetPasskey(ctx context.Context, id string) (*model.Passkey, error)
	ListPasskeys(ctx context.Context, userID string) ([]model.Passkey, error)
	UpdatePasskey(ctx context.Context, id string, fn func(p *model.Passkey) error) (*model.Passkey, error)
	DeletePasskey(ctx context.Context, userID, id string, check func(u *model.User) error, ev storage.Events) error
}

// PasskeyConfig configures Passkeys.
type PasskeyConfig struct {
	// RPID is the WebAuthn relying-party id; empty: the issuer's host name
	// (per request, so one configuration serves each site's issuer).
	RPID string
	// RPName is the name authenticators show ("guestauth" when empty).
	RPName string
}

// Passkeys runs the WebAuthn ceremonies of a Service's browser users.
type Passkeys struct {
	s     *Service
	store PasskeyStore
	cfg   PasskeyConfig
	// rps caches one relying party per (RP id, origin).
	rps sync.Map
}

// NewPasskeys turns passkeys on for s, with store holding them.
func NewPasskeys(s *Service, store PasskeyStore, cfg PasskeyConfig) (*Passkeys, error) {
	if cfg.RPName == "" {
		cfg.RPName = "guestauth"
	}
	if cfg.RPID != "" {
		if _, err := webauthn.New(&webauthn.Config{RPID: cfg.RPID, RPDisplayName: cfg.RPName, RPOrigins: []string{"https://" + cfg.RPID}}); err != nil {
			return nil, fmt.Errorf("passkeys: rp_id %q: %w", cfg.RPID, err)
		}
	}
	return &Passkeys{s: s, store: store, cfg: cfg}, nil
}

// relyingParty is the WebAuthn relying party of issuer: its origin is
// the issuer's, its id the configured one or the issuer's host name.
func (p *Passkeys) relyingParty(issuer string) (*webauthn.WebAuthn, error) {
	iu, err := url.Parse(issuer)
	if err != nil || iu.Host == "" || (iu.Scheme != "https" && iu.Scheme != "http") {
		return nil, fmt.Errorf("passkeys: issuer %q is not an http(s) URL", issuer)
	}
	origin := iu.Scheme + "://" + iu.Host
	rpID := p.cfg.RPID
	if rpID == "" {
		rpID = iu.Hostname()
	}
	key := rpID + " " + origin
	if wa, ok := p.rps.Load(key); ok {
		return wa.(*webauthn.WebAuthn), nil
	}
	timeout := webauthn.TimeoutConfig{Enforce: true, Timeout: PasskeyCeremonyTTL, TimeoutUVD: PasskeyCeremonyTTL}
	wa, err := webauthn.New(&webauthn.Config{
		RPID: rpID, RPDisplayName: p.cfg.RPName, RPOrigins: []string{origin},
		Timeouts: webauthn.TimeoutsConfig{Login: timeout, Registration: timeout},
	})
	if err != nil {
		return nil, fmt.Errorf("passkeys: relying party %q for %s: %w", rpID, origin, err)
	}
	got, _ := p.rps.LoadOrStore(key, wa)
	return got.(*webauthn.WebAuthn), nil
}

// storedCredential is model.Passkey.Credential: the library's record and
// its flags octet, which the record's JSON carries only as booleans.
type storedCredential struct {
	Credential webauthn.Credential `json:"credential"`
	RawFlags   uint8               `json:"raw_flags"`
}

func encodeCredential(c *webauthn.Credential) (json.RawMessage, error) {
	return json.Marshal(storedCredential{Credential: *c, RawFlags: uint8(c.Flags.ProtocolValue())})
}

func decodeCredential(p *model.Passkey) (*webauthn.Credential, error) {
	var sc storedCredential
	if err := json.Unmarshal(p.Credential, &sc); err != nil {
		return nil, fmt.Errorf("passkey %s: %w", p.ID, err)
	}
	sc.Credential.Flags = webauthn.NewCredentialFlags(protocol.AuthenticatorFlags(sc.RawFlags))
	return &sc.Credential, nil
}

// waUser is a user as the library sees it. Its user handle is the user
// id's bytes (a UUID's 36 characters: within WebAuthn's 64 bytes).
type waUser struct {
	u     *model.User
	creds []webauthn.Credential
}

func (w *waUser) WebAuthnID() []byte   { return []byte(w.u.ID) }
func (w *waUser) WebAuthnName() string { return w.u.Name }
func (w *waUser) WebAuthnDisplayName() string {
	if w.u.DisplayName != "" {
		return w.u.DisplayName
	}
	return w.u.Name
}
func (w *waUser) WebAuthnCredentials() []webauthn.Credential { return w.creds }

// loadWAUser reads u's passkeys as the library's credentials.
func (p *Passkeys) loadWAUser(ctx context.Context, u *model.User) (*waUser, []model.Passkey, error) {
	pks, err := p.store.ListPasskeys(ctx, u.ID)
	if err != nil {
		return nil, nil, err
	}
	w := &waUser{u: u}
	for i := range pks {
		c, err := decodeCredential(&pks[i])
		if err != nil {
			return nil, nil, err
		}
		w.creds = append(w.creds, *c)
	}
	return w, pks, nil
}

// ceremony is the flow state of a begun ceremony.
type ceremony struct {
	Session webauthn.SessionData `json:"session"`
	Issuer  string               `json:"issuer"`
	// UserID and SessionID (registration): the browser session that
	// began it, the only one that can finish it.
	UserID    string `json:"user_id,omitempty"`
	SessionID string `json:"session_id,omitempty"`
}

// errCeremony is the one answer for a ceremony that cannot be finished:
// unknown, expired, already finished, begun by another session.
var errCeremony = refuse(CodeInvalidGrant, "The passkey request expired or was already used; try again.")

// errPasskey refuses an authenticator response that does not verify.
var errPasskey = refuse(CodeInvalidGrant, "The passkey was not accepted.")

// BeginRegistration starts saving a passkey for the browser user id
// under issuer: the options for navigator.credentials.create (JSON,
// {"publicKey":{...}}) and the ceremony's handle for
// FinishRegistration. The ceremony's state is a throttled store write
// (Service.PutFlowState's limits for clientIP).
func (p *Passkeys) BeginRegistration(ctx context.Context, id *Identity, issuer, clientIP string) (options []byte, handle string, err error) {
	wa, err := p.relyingParty(issuer)
	if err != nil {
		return nil, "", err
	}
	w, pks, err := p.loadWAUser(ctx, id.User)
	if err != nil {
		return nil, "", err
	}
	if len(pks) >= MaxPasskeysPerUser {
		return nil, "", refuse(CodeInvalidRequest, "An account can have at most %d passkeys.", MaxPasskeysPerUser)
	}
	creation, sess, err := wa.BeginRegistration(w,
		webauthn.WithAuthenticatorSelection(protocol.AuthenticatorSelection{
			ResidentKey: protocol.ResidentKeyRequirementRequired, RequireResidentKey: protocol.ResidentKeyRequired(),
			UserVerification: protocol.VerificationRequired,
		}),
		webauthn.WithExclusions(webauthn.Credentials(w.creds).CredentialDescriptors()))
	if err != nil {
		return nil, "", fmt.Errorf("passkeys: beginning a registration: %w", err)
	}
	handle, err = p.s.PutFlowState(ctx, FlowPasskeyRegister, PasskeyCeremonyTTL,
		ceremony{Session: *sess, Issuer: issuer, UserID: id.User.ID, SessionID: id.Session.ID}, clientIP)
	if err != nil {
		return nil, "", err
	}
	options, err = json.Marshal(creation)
	return options, handle, err
}

// PasskeyRegistration is what FinishRegistration did.
type PasskeyRegistration struct {
	// Login is the browser's new session (the user has a new way to sign
	// in: RotateBrowserSession); set even when err is not nil, once the
	// old session was ended.
	Login   *BrowserLogin
	User    *model.User
	Passkey *model.Passkey
	// Upgraded: the user was a guest and is a member now.
	Upgraded bool
}

// FinishRegistration verifies the authenticator's response (JSON, as
// PublicKeyCredential.toJSON() gives it) to the ceremony handle names,
// begun by id's browser session, and stores the passkey under name. A
// guest becomes a member (same id, tag normal-user, no password) in the
// same write; guest.upgraded is reported. The browser gets a new session
// first (see RotateBrowserSession).
func (p *Passkeys) FinishRegistration(ctx context.Context, id *Identity, issuer, handle string, response []byte, name string) (*PasskeyRegistration, error) {
	name, err := passkeyName(name)
	if err != nil {
		return nil, err
	}
	if len(response) > MaxPasskeyResponse {
		return nil, errPasskey
	}
	var c ceremony
	if _, err := p.s.TakeFlowState(ctx, FlowPasskeyRegister, handle, &c); err != nil {
		if errors.Is(err, model.ErrNotFound) || errors.Is(err, model.ErrSpent) {
			return nil, errCeremony
		}
		return nil, err
	}
	if c.Issuer != issuer || c.UserID != id.User.ID || c.SessionID != id.Session.ID {
		return nil, errCeremony
	}
	wa, err := p.relyingParty(issuer)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return nil, errPasskey
	}
	cred, err := wa.CreateCredential(&waUser{u: id.User}, c.Session, parsed)
	if err != nil {
		return nil, errPasskey
	}
	raw, err := encodeCredential(cred)
	if err != nil {
		return nil, err
	}
	now := p.s.now().UTC()
	pk := &model.Passkey{ID: base64.RawURLEncoding.EncodeToString(cred.ID), UserID: id.User.ID, Name: name, CreatedAt: now, Credential: raw}

	// A new way in: a new session, before the write (RotateBrowserSession).
	login, err := p.s.RotateBrowserSession(ctx, id, id.User, issuer)
	if errors.Is(err, model.ErrNotFound) {
		return nil, refuse(CodeInvalidGrant, "The user no longer exists.")
	}
	if err != nil {
		return nil, err
	}
	res := &PasskeyRegistration{Login: login}
	upgraded := func(storage.TxResult) []events.Event {
		if !res.Upgraded {
			return nil
		}
		return []events.Event{{Type: events.GuestUpgraded, UserID: id.User.ID, ClientID: BrowserClientID, Data: map[string]any{"old_name": id.User.Name, "new_name": id.User.Name, "method": MethodPasskey}}}
	}
	up := p.s.withEvents(upgraded)
	u, err := p.store.AddPasskey(ctx, pk, func(u *model.User) error {
		res.Upgraded = false
		if u.Passkeys >= MaxPasskeysPerUser {
			return refuse(CodeInvalidRequest, "An account can have at most %d passkeys.", MaxPasskeysPerUser)
		}
		if u.Tag == model.TagGuest {
			u.Tag = model.TagNormal
			u.OrphanedAt = time.Time{}
			res.Upgraded = true
			up.bornAt(u)
		}
		u.UpdatedAt = now
		return nil
	}, up.tx())
	switch {
	case errors.Is(err, model.ErrExists):
		return res, refuse(CodeInvalidRequest, "This passkey is already saved.")
	case errors.Is(err, model.ErrNotFound):
		return res, refuse(CodeInvalidGrant, "The user no longer exists.")
	case err != nil:
		return res, err
	}
	res.User, res.Passkey = u, pk
	login.User = u
	p.s.observeAll(ctx, up.stored(storage.TxResult{}))
	return res, nil
}

// BeginSignIn starts a sign-in with a discoverable passkey under issuer:
// the options for navigator.credentials.get (JSON, {"publicKey":{...}})
// and the ceremony's handle. The state is a throttled store write.
func (p *Passkeys) BeginSignIn(ctx context.Context, issuer, clientIP string) (options []byte, handle string, err error) {
	wa, err := p.relyingParty(issuer)
	if err != nil {
		return nil, "", err
	}
	assertion, sess, err := wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		return nil, "", fmt.Errorf("passkeys: beginning a sign-in: %w", err)
	}
	handle, err = p.s.PutFlowState(ctx, FlowPasskeySignIn, PasskeyCeremonyTTL, ceremony{Session: *sess, Issuer: issuer}, clientIP)
	if err != nil {
		return nil, "", err
	}
	options, err = json.Marshal(assertion)
	return options, handle, err
}

// FinishSignIn verifies the authenticator's assertion (JSON) for the
// ceremony handle names and signs its user in: the browser gets a new
// session (RotateBrowserSession), and a guest signed in until now (prev)
// is merged into the user, as on a password sign-in. The passkey's
// signature counter and backup flags are stored; a counter that went
// backwards (a cloned authenticator) is refused.
func (p *Passkeys) FinishSignIn(ctx context.Context, prev *Identity, issuer, handle string, response []byte) (*BrowserLogin, error) {
	if len(response) > MaxPasskeyResponse {
		return nil, errPasskey
	}
	var c ceremony
	if _, err := p.s.TakeFlowState(ctx, FlowPasskeySignIn, handle, &c); err != nil {
		if errors.Is(err, model.ErrNotFound) || errors.Is(err, model.ErrSpent) {
			return nil, errCeremony
		}
		return nil, err
	}
	if c.Issuer != issuer {
		return nil, errCeremony
	}
	wa, err := p.relyingParty(issuer)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return nil, errPasskey
	}
	var storeErr error
	var user *model.User
	lookup := func(rawID, userHandle []byte) (webauthn.User, error) {
		u, err := p.s.store.GetUser(ctx, string(userHandle))
		if err != nil {
			if !errors.Is(err, model.ErrNotFound) {
				storeErr = err
			}
			return nil, err
		}
		w, _, err := p.loadWAUser(ctx, u)
		if err != nil {
			storeErr = err
			return nil, err
		}
		user = u
		return w, nil
	}
	_, cred, err := wa.ValidatePasskeyLogin(lookup, c.Session, parsed)
	if storeErr != nil {
		return nil, storeErr
	}
	if err != nil || user == nil {
		return nil, errPasskey
	}
	if cred.Authenticator.CloneWarning {
		return nil, refuse(CodeInvalidGrant, "This passkey's counter went backwards (a copied authenticator?); it was not accepted.")
	}
	raw, err := encodeCredential(cred)
	if err != nil {
		return nil, err
	}
	now := p.s.now().UTC()
	credID := base64.RawURLEncoding.EncodeToString(cred.ID)
	if _, err := p.store.UpdatePasskey(ctx, credID, func(pk *model.Passkey) error {
		if pk.UserID != user.ID {
			return errPasskey
		}
		pk.Credential = raw
		pk.LastUsedAt = now
		return nil
	}); err != nil {
		if errors.Is(err, model.ErrNotFound) {
			return nil, errPasskey // removed meanwhile
		}
		return nil, err
	}
	login, err := p.s.RotateBrowserSession(ctx, prev, user, issuer)
	if errors.Is(err, model.ErrNotFound) {
		return nil, errPasskey // deleted meanwhile
	}
	return login, err
}

// List returns id's user's passkeys, oldest first.
func (p *Passkeys) List(ctx context.Context, id *Identity) ([]model.Passkey, error) {
	return p.store.ListPasskeys(ctx, id.User.ID)
}

// Rename sets the label of one of id's user's passkeys.
func (p *Passkeys) Rename(ctx context.Context, id *Identity, credID, name string) error {
	name, err := passkeyName(name)
	if err != nil {
		return err
	}
	_, err = p.store.UpdatePasskey(ctx, credID, func(pk *model.Passkey) error {
		if pk.UserID != id.User.ID {
			return model.ErrNotFound
		}
		pk.Name = name
		return nil
	})
	if errors.Is(err, model.ErrNotFound) {
		return refuse(CodeInvalidRequest, "No such passkey.")
	}
	return err
}

// Remove deletes one of id's user's passkeys, unless it is the last way
// to sign in (Service.hasWayIn): CodeLastSignIn then. The check is made in the store's transaction.
func (p *Passkeys) Remove(ctx context.Context, id *Identity, credID string) error {
	errLast := refuse(CodeLastSignIn, "This passkey is the last way to sign in to the account; set a password, save another passkey or link a provider first.")
	err := p.store.DeletePasskey(ctx, id.User.ID, credID, func(u *model.User) error {
		if !p.s.hasWayIn(u) {
			return errLast
		}
		return nil
	}, nil)
	if errors.Is(err, model.ErrNotFound) {
		return refuse(CodeInvalidRequest, "No such passkey.")
	}
	return err
}

// passkeyName checks a passkey's label: trimmed, printable, bounded.
func passkeyName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if !utf8.ValidString(name) || utf8.RuneCountInString(name) > MaxPasskeyNameLength || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", refuse(CodeInvalidRequest, "A passkey's name must be at most %d printable characters.", MaxPasskeyNameLength)
	}
	return name, nil
}

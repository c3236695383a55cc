package accounts

// Email: an address on the account, verified by a mailed link; sign-in
// by a verified address; password recovery; sign-in links. Every link is
// a flow state (single use, expiring, only its hash stored), so any
// process sharing the store can finish what another started, and every
// mail goes through the Mailer, which queues it durably in the store's
// outbox before the request is answered.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"golang.org/x/net/idna"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Kinds of email flow state.
const (
	FlowVerifyEmail = "email_verify"
	FlowReset       = "password_reset"
	FlowSignInLink  = "email_signin"
)

// Lifetimes of the mailed links.
const (
	VerifyTTL = 24 * time.Hour
	ResetTTL  = time.Hour
	SignInTTL = 15 * time.Minute
)

// Link paths, under the link base the caller gives (the site's origin and
// the pages' prefix): the pages serve them.
const (
	LinkVerify = "verify-email"
	LinkReset  = "reset-password"
	LinkSignIn = "email-signin"
)

// Kinds of mail (Mail.Kind): each has its templates.
const (
	MailVerify  = "verify"  // the verification link of a new address
	MailChanged = "changed" // to the previous verified address, when it changes
	MailReset   = "reset"   // a password reset link
	MailSignIn  = "signin"  // a sign-in link
)

// MaxEmailLength bounds an address (RFC 5321's path limit).
const MaxEmailLength = 254

// Email error codes.
const (
	CodeInvalidEmail = "invalid_email"
	CodeEmailTaken   = "email_taken"
	CodeNoEmail      = "email_not_configured"
)

// Refusals of a link: the one answer for an unknown, expired or reused
// link would hide a replay, so a used link says so.
var (
	errLinkUnknown = refuse(CodeInvalidGrant, "This link is invalid or has expired; ask for a new one.")
	errLinkUsed    = refuse(CodeInvalidGrant, "This link was already used; ask for a new one.")
	errNoMailer    = refuse(CodeNoEmail, "Email is not configured on this site.")
)

// Mail is one message to queue: the Mailer renders Kind's templates with
// it. It holds the link (a secret) until the mail is sent; it never goes
// into an event or a log.
type Mail struct {
	Kind string `json:"kind"`
	To   string `json:"to"`
	// Name is how the mail addresses the user (display name or username).
	Name string `json:"name,omitempty"`
	// Link is the absolute URL to open (not for MailChanged).
	Link string `json:"link,omitempty"`
	// NewEmail is the new address, for MailChanged.
	NewEmail string `json:"new_email,omitempty"`
	// ExpiresIn is the link's lifetime, for the text.
	ExpiresIn time.Duration `json:"expires_in,omitempty"`
}

// Mailer queues mail durably (internal/mail): once Queue returns nil the
// mail is stored and will be sent, at least once, whatever happens to the
// process or the SMTP server meanwhile.
type Mailer interface {
	Queue(ctx context.Context, m Mail) error
}

// EmailEnabled reports whether the Service sends mail (Config.Mailer).
func (s *Service) EmailEnabled() bool { return s.cfg.Mailer != nil }

// NormalizeEmail checks an address typed by a user and returns it as
// stored: a bare addr-spec, at most MaxEmailLength, its domain lowercase
// ASCII (IDNA), so model.EmailKey compares one domain one way however it
// was typed. The local part is kept as typed.
func NormalizeEmail(addr string) (string, error) {
	bad := refuse(CodeInvalidEmail, "Enter an email address such as name@example.com.")
	addr = strings.TrimSpace(addr)
	if addr == "" || len(addr) > MaxEmailLength || strings.ContainsAny(addr, "<>\"\r\n ,;") {
		return "", bad
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Name != "" || a.Address != addr {
		return "", bad
	}
	at := strings.LastIndexByte(addr, '@')
	local, domain := addr[:at], strings.TrimSuffix(addr[at+1:], ".")
	ascii, err := idna.Lookup.ToASCII(domain)
	if err != nil || local == "" || !strings.Contains(ascii, ".") {
		return "", bad
	}
	out := local + "@" + strings.ToLower(ascii)
	if len(out) > MaxEmailLength {
		return "", bad
	}
	return out, nil
}

// emailLink is the state of a mailed link: whose, for which address, and
// (a reset) a fingerprint of the password it replaces, so a link from
// before a password change is dead.
type emailLink struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Stamp  string `json:"stamp,omitempty"`
}

// passwordStamp fingerprints a password hash for a reset link: not the
// hash itself, which the flow state must not copy.
func passwordStamp(hash string) string {
	h := sha256.Sum256([]byte("guestauth reset stamp v1\x00" + hash))
	return b64(h[:12])
}

func mailName(u *model.User) string {
	if u.DisplayName != "" {
		return u.DisplayName
	}
	if u.IsAnonymous() {
		return ""
	}
	return u.Name
}

// admitMail spends one try of the mail budgets of addr and of the client
// network, before any lookup or write: every request that may send mail
// (a verification, a reset, a sign-in link) draws on them, the refused
// ones included, so neither a flood nor a probe costs more than the
// budget.
func (s *Service) admitMail(addr, clientIP string) error {
	if wait := s.mailByIP.Take(ipKey(clientIP)); wait > 0 {
		return s.throttled(LimitEmail, wait)
	}
	if wait := s.mailByAddr.Take("mail:" + model.EmailKey(addr)); wait > 0 {
		return s.throttled(LimitEmail, wait)
	}
	return nil
}

// SetEmailRequest adds or changes a user's address.
type SetEmailRequest struct {
	Email string
	// LinkBase is the site's origin and pages prefix ("https://example.com/auth/").
	LinkBase string
	ClientIP string
}

// SetEmail gives id's user the address req.Email, unverified, and mails
// it a verification link (VerifyTTL). A user's verified address that
// changes gets a notice. Sending the current address again mails a new
// link while it is unverified, and does nothing once it is verified.
// Whether another user has the address verified is not told here (that
// would tell who has an account); the link says so to its owner.
func (s *Service) SetEmail(ctx context.Context, id *Identity, req SetEmailRequest) (*model.User, error) {
	if s.cfg.Mailer == nil {
		return nil, errNoMailer
	}
	addr, err := NormalizeEmail(req.Email)
	if err != nil {
		return nil, err
	}
	cur := id.User
	if cur.EmailVerified && model.EmailKey(cur.Email) == model.EmailKey(addr) {
		return cur, nil
	}
	if err := s.admitMail(addr, req.ClientIP); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	var old string
	u, err := s.store.UpdateUser(ctx, cur.ID, func(u *model.User) error {
		old = ""
		if u.EmailVerified && model.EmailKey(u.Email) != model.EmailKey(addr) {
			old = u.Email
		}
		if model.EmailKey(u.Email) != model.EmailKey(addr) || u.Email != addr {
			u.Email, u.EmailVerified = addr, false
			u.UpdatedAt = now
		}
		return nil
	}, nil)
	if errors.Is(err, model.ErrNotFound) {
		return nil, refuse(CodeInvalidGrant, "The user no longer exists.")
	}
	if err != nil {
		return nil, err
	}
	if u.EmailVerified { // a concurrent verification of the same address
		return u, nil
	}
	if err := s.mailLink(ctx, u, FlowVerifyEmail, MailVerify, LinkVerify, VerifyTTL, req.LinkBase, ""); err != nil {
		return nil, err
	}
	if old != "" {
		if err := s.cfg.Mailer.Queue(ctx, Mail{Kind: MailChanged, To: old, Name: mailName(u), NewEmail: addr}); err != nil {
			return nil, fmt.Errorf("queueing the change notice: %w", err)
		}
	}
	return u, nil
}

// mailLink stores a link of kind for u's address and queues its mail.
func (s *Service) mailLink(ctx context.Context, u *model.User, kind, mailKind, path string, ttl time.Duration, linkBase, stamp string) error {
	handle, err := s.putFlowState(ctx, kind, ttl, emailLink{UserID: u.ID, Email: u.Email, Stamp: stamp})
	if err != nil {
		return err
	}
	link := strings.TrimSuffix(linkBase, "/") + "/" + path + "?token=" + handle
	if err := s.cfg.Mailer.Queue(ctx, Mail{Kind: mailKind, To: u.Email, Name: mailName(u), Link: link, ExpiresIn: ttl}); err != nil {
		return fmt.Errorf("queueing the %s mail: %w", mailKind, err)
	}
	return nil
}

// takeLink takes the link handle names, of kind.
func (s *Service) takeLink(ctx context.Context, kind, handle string) (*emailLink, error) {
	var l emailLink
	_, err := s.TakeFlowState(ctx, kind, handle, &l)
	switch {
	case errors.Is(err, model.ErrSpent):
		return nil, errLinkUsed
	case errors.Is(err, model.ErrNotFound):
		return nil, errLinkUnknown
	case err != nil:
		return nil, err
	}
	return &l, nil
}

// VerifyEmail takes a verification link and marks its address verified,
// if it is still the user's address: a link to an address since changed
// is refused, and so is an address another user verified first
// (CodeEmailTaken). When prev, the browser opening the link, is the
// user's own session, it gets a new session (a new way to sign in was
// added: RotateBrowserSession), returned as login; otherwise login is nil
// and the browser's session is left alone.
func (s *Service) VerifyEmail(ctx context.Context, prev *Identity, handle, issuer string) (u *model.User, login *BrowserLogin, err error) {
	l, err := s.takeLink(ctx, FlowVerifyEmail, handle)
	if err != nil {
		return nil, nil, err
	}
	cur, err := s.store.GetUser(ctx, l.UserID)
	if errors.Is(err, model.ErrNotFound) {
		return nil, nil, errLinkUnknown
	}
	if err != nil {
		return nil, nil, err
	}
	if cur.Email != l.Email {
		return nil, nil, refuse(CodeInvalidGrant, "This link is for an address the account no longer has.")
	}
	if prev != nil && prev.User.ID == cur.ID {
		if login, err = s.RotateBrowserSession(ctx, prev, cur, issuer); err != nil {
			return nil, nil, err
		}
	}
	u, err = s.store.UpdateUser(ctx, l.UserID, func(u *model.User) error {
		if u.Email != l.Email {
			return errConflict
		}
		if !u.EmailVerified {
			u.EmailVerified = true
			u.UpdatedAt = s.now().UTC()
		}
		return nil
	}, nil)
	switch {
	case errors.Is(err, model.ErrEmailTaken):
		return nil, login, refuse(CodeEmailTaken, "This address is already verified by another account.")
	case errors.Is(err, errConflict):
		return nil, login, refuse(CodeInvalidGrant, "This link is for an address the account no longer has.")
	case errors.Is(err, model.ErrNotFound):
		return nil, login, errLinkUnknown
	case err != nil:
		return nil, login, err
	}
	return u, login, nil
}

// EmailLinkRequest asks for a reset or sign-in link for an address.
type EmailLinkRequest struct {
	Email    string
	LinkBase string
	ClientIP string
}

// ForgotPassword mails a password reset link (ResetTTL) to the user whose
// verified address req.Email is. The answer is the same whether or not
// there is one (nil), except for a malformed address or a limit: both
// say nothing about accounts. The budgets of the address and of the
// client network are spent first.
func (s *Service) ForgotPassword(ctx context.Context, req EmailLinkRequest) error {
	return s.mailByAddress(ctx, req, func(u *model.User) error {
		return s.mailLink(ctx, u, FlowReset, MailReset, LinkReset, ResetTTL, req.LinkBase, passwordStamp(u.PasswordHash))
	})
}

// RequestSignInLink mails a sign-in link (SignInTTL) to the user, guest
// or not, whose verified address req.Email is; the same answer whether or
// not there is one, as ForgotPassword.
func (s *Service) RequestSignInLink(ctx context.Context, req EmailLinkRequest) error {
	return s.mailByAddress(ctx, req, func(u *model.User) error {
		return s.mailLink(ctx, u, FlowSignInLink, MailSignIn, LinkSignIn, SignInTTL, req.LinkBase, "")
	})
}

func (s *Service) mailByAddress(ctx context.Context, req EmailLinkRequest, send func(u *model.User) error) error {
	if s.cfg.Mailer == nil {
		return errNoMailer
	}
	addr, err := NormalizeEmail(req.Email)
	if err != nil {
		return err
	}
	if err := s.admitMail(addr, req.ClientIP); err != nil {
		return err
	}
	u, err := s.store.GetUserByEmail(ctx, addr)
	if errors.Is(err, model.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return send(u)
}

// checkLink reads the user of a link and checks the link still fits it:
// the same verified address.
func (s *Service) checkLink(ctx context.Context, l *emailLink) (*model.User, error) {
	u, err := s.store.GetUser(ctx, l.UserID)
	if errors.Is(err, model.ErrNotFound) {
		return nil, errLinkUnknown
	}
	if err != nil {
		return nil, err
	}
	if !u.EmailVerified || u.Email != l.Email {
		return nil, errLinkUnknown
	}
	return u, nil
}

// ResetLink reports whether handle names a usable reset link, without
// taking it (the reset page's first load).
func (s *Service) ResetLink(ctx context.Context, handle string) error {
	_, err := s.peekReset(ctx, handle)
	return err
}

// peekReset reads a reset link without taking it and returns its user,
// checked: the same verified address, the same password as when mailed.
func (s *Service) peekReset(ctx context.Context, handle string) (*model.User, error) {
	var l emailLink
	_, err := s.FlowState(ctx, FlowReset, handle, &l)
	switch {
	case errors.Is(err, model.ErrSpent):
		return nil, errLinkUsed
	case errors.Is(err, model.ErrNotFound):
		return nil, errLinkUnknown
	case err != nil:
		return nil, err
	}
	u, err := s.checkLink(ctx, &l)
	if err != nil {
		return nil, err
	}
	if passwordStamp(u.PasswordHash) != l.Stamp {
		return nil, errLinkUnknown
	}
	return u, nil
}

// ResetRequest sets a new password with a reset link.
type ResetRequest struct {
	Handle, Password string
	Issuer, ClientIP string
}

// ResetPassword sets a new password with a reset link: the link is taken
// (single use) once the new password is hashed (within the account's and
// client network's hash budgets), and refused if the password changed
// since it was mailed. Every session of the user ends (the reset proves
// only the mailbox: whoever held a session may be who took the account),
// password.reset is reported with the write, and a guest becomes a normal
// user as with any password set. A browser (prev, its session or nil)
// gets a new session of the user, as for any sign-in; an API caller
// (ResetPasswordAPI) signs in afterwards.
func (s *Service) ResetPassword(ctx context.Context, prev *Identity, req ResetRequest) (*BrowserLogin, error) {
	u, err := s.resetPassword(ctx, req)
	if err != nil {
		return nil, err
	}
	login, err := s.RotateBrowserSession(ctx, prev, u, req.Issuer)
	if errors.Is(err, model.ErrNotFound) {
		return nil, errLinkUnknown
	}
	return login, err
}

// ResetPasswordAPI is ResetPassword for an API client: no session is
// started.
func (s *Service) ResetPasswordAPI(ctx context.Context, req ResetRequest) (*model.User, error) {
	return s.resetPassword(ctx, req)
}

func (s *Service) resetPassword(ctx context.Context, req ResetRequest) (*model.User, error) {
	if err := checkPasswordLength(req.Password); err != nil {
		return nil, refuse(CodeInvalidPassword, "A password must be %d to %d characters.", MinPasswordLength, MaxPasswordLength)
	}
	// Read first: a refused password or budget leaves the link usable.
	cur, err := s.peekReset(ctx, req.Handle)
	if err != nil {
		return nil, err
	}
	hash, err := s.hashNewPassword(ctx, cur.Name, req.Password, req.ClientIP)
	if err != nil {
		return nil, err
	}
	l, err := s.takeLink(ctx, FlowReset, req.Handle)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	upgraded := false
	oldName := ""
	p := s.withEvents(func(storage.TxResult) []events.Event {
		evs := []events.Event{{Type: events.PasswordReset, UserID: l.UserID, Data: map[string]any{"via": "email", "client_ip": clientIPOf(ctx)}}}
		if upgraded {
			evs = append(evs, events.Event{Type: events.GuestUpgraded, UserID: l.UserID, Data: map[string]any{"old_name": oldName, "new_name": oldName, "method": MethodEmail}})
		}
		return evs
	})
	u, err := s.store.UpdateUser(ctx, l.UserID, func(u *model.User) error {
		if !u.EmailVerified || u.Email != l.Email || passwordStamp(u.PasswordHash) != l.Stamp {
			return errConflict
		}
		upgraded, oldName = false, u.Name
		u.PasswordHash = hash
		if u.Tag == model.TagGuest {
			u.Tag = model.TagNormal
			u.OrphanedAt = time.Time{}
			upgraded = true
			p.bornAt(u)
		}
		u.UpdatedAt = now
		return nil
	}, p.tx())
	switch {
	case errors.Is(err, errConflict), errors.Is(err, model.ErrNotFound):
		return nil, errLinkUnknown
	case err != nil:
		return nil, err
	}
	dp := s.withEvents(revoked(u.ID, "password_reset"))
	n, err := s.store.DeleteUserSessions(ctx, u.ID, "", dp.tx())
	if err != nil {
		return nil, fmt.Errorf("ending the sessions: %w", err)
	}
	s.observeAll(ctx, p.stored(storage.TxResult{}), dp.stored(storage.TxResult{Ended: n}))
	return u, nil
}

// SignInWithLink takes a sign-in link and gives the browser (prev, its
// session or nil) a new session of the link's user, as any sign-in does:
// a guest's session replaced by another user's is a merge.
func (s *Service) SignInWithLink(ctx context.Context, prev *Identity, handle, issuer string) (*BrowserLogin, error) {
	l, err := s.takeLink(ctx, FlowSignInLink, handle)
	if err != nil {
		return nil, err
	}
	u, err := s.checkLink(ctx, l)
	if err != nil {
		return nil, err
	}
	login, err := s.RotateBrowserSession(ctx, prev, u, issuer)
	if errors.Is(err, model.ErrNotFound) {
		return nil, errLinkUnknown
	}
	return login, err
}

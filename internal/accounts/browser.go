package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/ctcmp"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Browser sessions: a browser holds an opaque handle in a cookie, bound to
// a stored session; it never holds a token (no JWT the browser could replay
// after revocation, no refresh token to race over between tabs). Ending the
// session (sign-out, revocation, deletion of the user) ends the handle at
// once, since every request reads the session through the identity cache.
//
// A handle is "<session id>.<user id>.<mac>": mac is HMAC-SHA256 (256 bits)
// keyed with the session's random RefreshKey over a purpose string, so it
// cannot be forged or derived from a refresh token, and the ids let the
// identity cache answer without a store read.

// BrowserClientID is the ClientID of browser sessions. No configured client
// can have it (a client_id is never empty), so no grant, refresh or
// revocation by a client can act on a browser session, and Authenticate
// (whose access tokens carry a client as aud) never sees one.
const BrowserClientID = ""

// BrowserSlideEvery is how stale a browser session's last-used time may get
// before a request slides its idle expiry (one store write, coalesced by the
// backend's batching): at most one write per session per this interval,
// never one per request. The cookie is re-sent with its new expiry then.
const BrowserSlideEvery = 5 * time.Minute

// BrowserLogin is a browser session just started or just slid: the handle
// to set as the cookie, valid until Session.EndsAt().
type BrowserLogin struct {
	Handle  string
	User    *model.User
	Session *model.Session
}

const browserPurpose = "guestauth browser session v1."

// BrowserHandle is the cookie value of sess.
func BrowserHandle(sess *model.Session) string {
	return sess.ID + "." + sess.UserID + "." + browserMAC(sess)
}

func browserMAC(sess *model.Session) string {
	h := hmac.New(sha256.New, sess.RefreshKey)
	h.Write([]byte(browserPurpose + sess.ID))
	return b64(h.Sum(nil))
}

func parseHandle(handle string) (sid, uid, mac string, ok bool) {
	if len(handle) > 200 {
		return "", "", "", false
	}
	sid, rest, ok1 := strings.Cut(handle, ".")
	uid, mac, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || len(sid) != 36 || uid == "" || mac == "" {
		return "", "", "", false
	}
	return sid, uid, mac, true
}

// CreateBrowserGuest creates a guest with a browser session under issuer,
// within the guest creation limits for clientIP (a *ThrottledError when
// refused; then nothing is written). The session starts unconfirmed: it
// ends after Config.BrowserUnconfirmed unless its handle comes back on a
// later request (BrowserAuthenticate), so guests of clients that never
// return the cookie (crawlers, cookie-less clients) end up orphaned and are
// deleted by the next sweeps.
func (s *Service) CreateBrowserGuest(ctx context.Context, issuer, clientIP string) (*BrowserLogin, error) {
	p := s.browserGuestEvents(ctx)
	login, err := s.createBrowserGuest(ctx, issuer, clientIP, p.tx())
	if err != nil {
		return nil, err
	}
	s.observeAll(ctx, p.stored(storage.TxResult{Created: []model.User{*login.User}}))
	return login, nil
}

// browserGuestEvents is the guest.created event of a browser guest.
func (s *Service) browserGuestEvents(ctx context.Context) *pending {
	return s.withEvents(created(events.Event{Type: events.GuestCreated, Data: map[string]any{"via": "browser", "client_ip": clientIPOf(ctx)}}))
}

// createBrowserGuest creates a browser guest, storing ev's events with it.
func (s *Service) createBrowserGuest(ctx context.Context, issuer, clientIP string, ev storage.Events) (*BrowserLogin, error) {
	if err := s.admitGuest(ctx, clientIP); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	u, err := newGuest(now)
	if err != nil {
		return nil, err
	}
	sess, err := s.newSession(u.ID, BrowserClientID, issuer, now)
	if err != nil {
		return nil, err
	}
	if w := s.cfg.BrowserUnconfirmed; w > 0 && now.Add(w).Before(sess.IdleExpiresAt) {
		sess.IdleExpiresAt = now.Add(w)
	}
	if err := s.store.CreateUser(ctx, u, sess, nil, ev); err != nil {
		return nil, fmt.Errorf("storing guest: %w", err)
	}
	s.cfg.Activity.Touch(u.ID, now)
	return &BrowserLogin{Handle: BrowserHandle(sess), User: u, Session: sess}, nil
}

// RotateBrowserSession gives a browser a new session of u under issuer,
// and ends prev's (the browser's session until now; nil for a browser
// without one) at once. It is the one way a browser's privilege changes:
// every sign-in (the password today; providers, passkeys and email links
// must sign in through it too), a guest's upgrade, a password set or
// changed, any new way to sign in added. Whoever knew the old handle (a
// cookie planted before the change, a handle seen on a shared machine:
// session fixation) then holds no session, whatever they do.
//
// What must carry over does: a rotation of the same user's session keeps
// its pending merge mark (MergedFrom); a guest's session replaced by
// another user's is a merge (Service.BrowserSignIn): the new session
// carries the guest's id for the app (TakeMerge) and guest.merged is
// reported, stored with the end of the guest's session.
//
// The new session is stored first, then prev's is ended; if that fails,
// the new one is removed again and the error returned, so the browser
// keeps its session and nothing changed. A caller therefore rotates
// before the write that raises the privilege (as UpdateBrowserProfile
// does), so the old handle never holds more than it held before.
// model.ErrNotFound means u was deleted meanwhile.
func (s *Service) RotateBrowserSession(ctx context.Context, prev *Identity, u *model.User, issuer string) (*BrowserLogin, error) {
	now := s.now().UTC()
	sess, err := s.newSession(u.ID, BrowserClientID, issuer, now)
	if err != nil {
		return nil, err
	}
	var merge *pending
	if prev != nil {
		switch {
		case prev.User.ID == u.ID:
			// Not yet told to the app: it is told on the new session.
			sess.MergedFrom = prev.Session.MergedFrom
		case prev.User.IsAnonymous():
			sess.MergedFrom = prev.User.ID
			merge = s.withEvents(one(events.Event{Type: events.GuestMerged, UserID: u.ID, Data: map[string]any{"guest_id": prev.User.ID, "user_id": u.ID}}))
		}
	}
	if _, err := s.store.PutSessionLimit(ctx, sess, s.cfg.MaxSessionsPerUser); err != nil {
		return nil, err
	}
	if prev != nil {
		var ev storage.Events
		if merge != nil {
			ev = merge.tx()
		}
		// Gone already (signed out meanwhile, over the session cap) is
		// ended all the same.
		ended, err := s.endSession(ctx, prev.Session.ID, ev)
		if err != nil {
			if _, uerr := s.endSession(context.WithoutCancel(ctx), sess.ID, nil); uerr != nil {
				err = errors.Join(err, fmt.Errorf("removing the new session: %w", uerr))
			}
			return nil, err
		}
		if merge != nil {
			s.observeAll(ctx, merge.reported(ended, storage.TxResult{}))
		}
	}
	s.cfg.Activity.Touch(u.ID, now)
	return &BrowserLogin{Handle: BrowserHandle(sess), User: u, Session: sess}, nil
}

// BrowserAuthenticate resolves a browser session handle to the current user
// and session under issuer, like Authenticate for access tokens: a deleted
// user or an ended session is a *tokens.InvalidError (ReasonSessionEnded,
// tokens.ReasonIssuer for a session started under another issuer, or
// tokens.ReasonMalformed for anything not a handle of ours).
//
// Sliding expiry: when the session was last slid more than
// BrowserSlideEvery ago, or never (an unconfirmed session, whose idle
// window is shorter than Config.SessionIdle), its idle expiry
// moves to now + Config.SessionIdle in one store write, and slid is the
// updated login, whose handle the caller re-sends with its new expiry.
// Concurrent requests of one session slide it once; the others go on with
// the stored session, which stays valid. Nothing here ends a session, so
// any number of parallel requests and tabs keep it.
func (s *Service) BrowserAuthenticate(ctx context.Context, handle, issuer string) (id *Identity, slid *BrowserLogin, err error) {
	sid, uid, mac, ok := parseHandle(handle)
	if !ok {
		return nil, nil, &tokens.InvalidError{Reason: tokens.ReasonMalformed}
	}
	u, sess, err := s.store.Identity(ctx, uid, sid)
	if errors.Is(err, model.ErrNotFound) {
		return nil, nil, &tokens.InvalidError{Reason: ReasonSessionEnded}
	}
	if err != nil {
		return nil, nil, err
	}
	if sess.ClientID != BrowserClientID || !ctcmp.Equal([]byte(browserMAC(sess)), []byte(mac)) {
		return nil, nil, &tokens.InvalidError{Reason: tokens.ReasonSignature}
	}
	if !issuedBy(sess, issuer) {
		// Another site's session, on a store they share.
		return nil, nil, &tokens.InvalidError{Reason: tokens.ReasonIssuer}
	}
	now := s.now()
	if !now.Before(sess.EndsAt()) {
		return nil, nil, &tokens.InvalidError{Reason: ReasonSessionEnded}
	}
	s.cfg.Activity.Touch(u.ID, now)
	id = &Identity{User: u, Session: sess}
	// Unconfirmed (or slid under a shorter idle timeout): its idle window
	// is shorter than the configured one.
	unconfirmed := sess.IdleExpiresAt.Sub(sess.LastUsedAt) < s.cfg.SessionIdle
	if !unconfirmed && now.Sub(sess.LastUsedAt) < BrowserSlideEvery {
		return id, nil, nil
	}
	if _, busy := s.sliding.LoadOrStore(sid, struct{}{}); busy {
		return id, nil, nil
	}
	defer s.sliding.Delete(sid)
	idle := s.cfg.SessionIdle
	updated, err := s.store.UpdateSession(ctx, sid, func(cur *model.Session) error {
		if !issuedBy(cur, issuer) {
			return errOtherIssuer
		}
		cur.Issuer = issuer // binds a session stored without one
		cur.LastUsedAt = now.UTC()
		cur.IdleExpiresAt = now.UTC().Add(idle)
		return nil
	}, nil)
	switch {
	case errors.Is(err, model.ErrNotFound):
		return nil, nil, &tokens.InvalidError{Reason: ReasonSessionEnded}
	case errors.Is(err, errOtherIssuer):
		return nil, nil, &tokens.InvalidError{Reason: tokens.ReasonIssuer}
	case err != nil:
		return nil, nil, err
	}
	id.Session = updated
	return id, &BrowserLogin{Handle: handle, User: u, Session: updated}, nil
}

// EndBrowserSession ends the session of id (sign-out), reporting
// session.revoked with cause "logout".
func (s *Service) EndBrowserSession(ctx context.Context, id *Identity) error {
	p := s.withEvents(one(events.Event{Type: events.SessionRevoked, UserID: id.User.ID, Data: map[string]any{"cause": "logout"}}))
	ended, err := s.endSession(ctx, id.Session.ID, p.tx())
	if err != nil {
		return err
	}
	s.observeAll(ctx, p.reported(ended, storage.TxResult{}))
	return nil
}

// errOtherIssuer: the session was bound to another issuer meanwhile.
var errOtherIssuer = errors.New("session of another issuer")

// errMergeTaken: another request already told the app of the merge.
var errMergeTaken = errors.New("merge already told")

// TakeMerge returns the guest id of id's session's merge (MergedFrom) and
// clears it, so of any number of concurrent requests exactly one gets it;
// "" when there is none (left).
func (s *Service) TakeMerge(ctx context.Context, id *Identity) (string, error) {
	if id.Session.MergedFrom == "" {
		return "", nil
	}
	var guest string
	_, err := s.store.UpdateSession(ctx, id.Session.ID, func(cur *model.Session) error {
		if cur.MergedFrom == "" {
			return errMergeTaken
		}
		guest, cur.MergedFrom = cur.MergedFrom, ""
		return nil
	}, nil)
	if errors.Is(err, errMergeTaken) || errors.Is(err, model.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return guest, nil
}

// BrowserSignIn is the password sign-in of the built-in pages: the same
// budgets, answers and checks as SignIn (device tokens aside: a browser
// session is the device), ending with a new browser session under issuer
// that replaces prev, the browser's session before (nil for none), through
// RotateBrowserSession: prev's handle is no session any more, and a guest's
// session signed in to an account is a merge.
func (s *Service) BrowserSignIn(ctx context.Context, prev *Identity, issuer, username, password, clientIP string) (*BrowserLogin, error) {
	u, err := s.checkSignIn(ctx, SignInRequest{Username: username, Password: password, ClientIP: clientIP})
	if err != nil {
		return nil, err
	}
	login, err := s.RotateBrowserSession(ctx, prev, u, issuer)
	if errors.Is(err, model.ErrNotFound) {
		return nil, errBadCredentials // deleted meanwhile
	}
	return login, err
}

// RegisterBrowser registers a new normal user for a visitor without a
// session, with a browser session under issuer (a handle nobody knew
// before): a guest created under the guest creation limits and upgraded at
// once by UpdateProfile, so the name and password rules and messages are
// exactly those of /api/update-user. A refused upgrade deletes the guest
// again and returns UpdateProfile's error.
func (s *Service) RegisterBrowser(ctx context.Context, issuer, username, password, clientIP string) (*BrowserLogin, error) {
	// Cheap refusals first, before any write.
	if err := ValidateName(strings.TrimSpace(username)); err != nil {
		return nil, err
	}
	if err := checkPasswordLength(password); err != nil {
		return nil, refuse(CodeInvalidPassword, "A password must be %d to %d characters.", MinPasswordLength, MaxPasswordLength)
	}
	p := s.browserGuestEvents(ctx)
	login, err := s.createBrowserGuest(ctx, issuer, clientIP, p.tx())
	if err != nil {
		return nil, err
	}
	s.observeAll(ctx, p.stored(storage.TxResult{Created: []model.User{*login.User}}))
	res, err := s.UpdateProfile(ctx, &Identity{User: login.User, Session: login.Session}, ProfileUpdate{Name: &username, Password: &password, ClientIP: clientIP})
	if err != nil {
		if _, derr := s.DeleteUser(ctx, login.User.ID, "signup_refused"); derr != nil && !errors.Is(derr, model.ErrNotFound) {
			return nil, errors.Join(err, derr)
		}
		return nil, err
	}
	// The session stays unconfirmed until its cookie comes back, but a
	// user with a password is never pruned as an orphan.
	login.User = res.User
	return login, nil
}

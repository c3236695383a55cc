package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// ThrottledError refuses a request over a limit: Limit is "signin" (too
// many password attempts), "ip" or "global" (guest creation rate), "cap"
// (the live guest cap) or "name" (username changes).
type ThrottledError struct {
	Limit      string
	RetryAfter time.Duration
}

// throttled is a refusal by limit, counted in the Service's LimitHits.
func (s *Service) throttled(limit string, wait time.Duration) *ThrottledError {
	s.cfg.LimitHits.Add(limit)
	return &ThrottledError{Limit: limit, RetryAfter: wait}
}

// LimitHits counts the requests refused by each limit since the last
// Take: the dashboard's daily limit counts of one store, which its process
// adds to that store in batches rather than with a write per refusal. One
// per store, shared by the Services (sites) using it. The zero value is
// ready; a nil *LimitHits counts nothing.
type LimitHits struct {
	mu sync.Mutex
	m  map[string]int64
}

func (h *LimitHits) Add(limit string) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]int64{}
	}
	h.m[limit]++
}

// Take returns the refusals counted since the last Take, by limit, and
// forgets them; nil if there were none.
func (h *LimitHits) Take() map[string]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.m
	h.m = nil
	return out
}

// Return gives back counts from Take that could not be stored, to be
// taken again.
func (h *LimitHits) Return(m map[string]int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]int64{}
	}
	for k, n := range m {
		h.m[k] += n
	}
}

func (e *ThrottledError) Error() string {
	switch e.Limit {
	case LimitSignIn:
		return fmt.Sprintf("Too many password attempts; retry in %d seconds.", e.RetrySeconds())
	case LimitCap:
		return fmt.Sprintf("The site has reached its limit of guest accounts; retry in %d seconds.", e.RetrySeconds())
	case LimitName:
		return fmt.Sprintf("Too many username changes; retry in %d seconds.", e.RetrySeconds())
	case LimitEmail:
		return fmt.Sprintf("Too many emails were asked for; retry in %d seconds.", e.RetrySeconds())
	}
	return fmt.Sprintf("Too many guest accounts were created; retry in %d seconds.", e.RetrySeconds())
}

// Limits a ThrottledError can name.
const (
	LimitSignIn = "signin"
	LimitIP     = "ip"
	LimitGlobal = "global"
	LimitCap    = "cap"
	LimitName   = "name"  // username changes (per user or per client IP)
	LimitEmail  = "email" // mail sent at a visitor's request (per address or per client network)
)

// RetrySeconds is RetryAfter rounded up to whole seconds (at least 1).
func (e *ThrottledError) RetrySeconds() int64 {
	return max(1, int64((e.RetryAfter+time.Second-1)/time.Second))
}

// errBadCredentials is the one answer for an unknown user, a guest and a wrong
// password, so sign-in reveals neither which accounts exist nor which are guests.
var errBadCredentials = &Error{Code: CodeInvalidGrant, Description: "The username or password is incorrect."}

// Password work is budgeted before it is done, so attempts still running
// count: each password hash (a sign-in, an old-password check, hashing a
// new password) spends one try from every budget it draws on, all at once
// or not at all, before the hash starts.
//
//   - The account's guess budget (Config.AccountLimit, keyed by name):
//     sign-ins without a valid device token. A failure keeps its try spent;
//     a success resets the budget.
//   - A trusted client's own guess budget (Config.DeviceLimit) instead of
//     the account's: a sign-in carrying a valid device token for the account
//     (keyed by the token), or an old-password check (keyed by the session
//     making it). Failures elsewhere cannot lock such a client out.
//   - The account's hash budget (Config.AccountHashLimit) and the client
//     IP's (Config.IPLimit), whatever the outcome: they bound the work and
//     the sessions a password can buy, and are never refunded.
type budget struct {
	t *Throttle
	// sh, when set, keeps the budget in the store instead of t (see
	// Config.SharedLimits).
	sh  Limiter
	key string
}

func accountKey(name string) string { return "acct:" + model.NameKey(name) }
func ipKey(ip string) string        { return "ip:" + ip }

// accountGuesses and accountHashes are the account's budgets for name.
func (s *Service) accountGuesses(name string) budget {
	return budget{t: s.byAcct, sh: s.byAcctShared, key: accountKey(name)}
}

func (s *Service) accountHashes(name string) budget {
	return budget{t: s.hashesByAcct, sh: s.hashesShared, key: accountKey(name)}
}

// reset gives b's key a full budget again. A store that cannot do so
// leaves the tries spent, the safe side, so its error is dropped.
func (b budget) reset(ctx context.Context) {
	if b.sh != nil {
		_ = b.sh.Reset(context.WithoutCancel(ctx), b.key)
		return
	}
	b.t.Reset(b.key)
}

// admit spends one try from each budget, or none when any is empty; then
// it refuses with the longest wait, after which all of them have a try.
// Budgets kept in the store are taken one by one between a check and the
// take of the in-memory ones, and given back when a later one refuses, so
// the whole stays all-or-nothing without holding admitMu across the
// store's round trips. A store that cannot answer refuses (its error,
// model.ErrUnavailable), never admits.
func (s *Service) admit(ctx context.Context, budgets ...budget) error {
	now := s.now()
	if err := s.admitLocal(budgets, now, false); err != nil {
		return err
	}
	var taken []budget
	refund := func() {
		for _, b := range taken {
			// A refund lost to an outage leaves the try spent: the safe side.
			_ = b.sh.Refund(context.WithoutCancel(ctx), b.key)
		}
	}
	for _, b := range budgets {
		if b.sh == nil {
			continue
		}
		wait, err := b.sh.Take(ctx, b.key, now)
		if err != nil {
			refund()
			return err
		}
		if wait > 0 {
			refund()
			return s.throttled(LimitSignIn, wait)
		}
		taken = append(taken, b)
	}
	if err := s.admitLocal(budgets, now, true); err != nil {
		refund()
		return err
	}
	return nil
}

// admitLocal checks the in-memory budgets and, if take, spends one try of
// each when all have one.
func (s *Service) admitLocal(budgets []budget, now time.Time, take bool) error {
	s.admitMu.Lock()
	defer s.admitMu.Unlock()
	var wait time.Duration
	for _, b := range budgets {
		if b.sh == nil {
			wait = max(wait, b.t.wait(b.key, now))
		}
	}
	if wait > 0 {
		return s.throttled(LimitSignIn, wait)
	}
	if take {
		if s.admitHook != nil {
			s.admitHook()
		}
		for _, b := range budgets {
			if b.sh == nil {
				b.t.take(b.key, now)
			}
		}
	}
	return nil
}

// verifyPassword and hashPassword are VerifyPassword and HashPassword with
// the test hook counting hashes.
func (s *Service) verifyPassword(pw, phc string) (bool, error) {
	if s.hashHook != nil {
		s.hashHook()
	}
	return VerifyPassword(pw, phc)
}

func (s *Service) hashPassword(pw string) (string, error) {
	if s.hashHook != nil {
		s.hashHook()
	}
	return HashPassword(pw, s.cfg.Argon2)
}

// SignInRequest is a password grant.
type SignInRequest struct {
	Issuer, ClientID   string
	Username, Password string
	// ClientIP keys the per-IP budget (Caddy's client IP).
	ClientIP string
	// DeviceToken is the device_token of an earlier successful sign-in to
	// this account on this client, if it has one (see SignIn).
	DeviceToken string
}

// SignIn is the password grant for normal users. Guests cannot sign in this
// way until they upgrade. An unknown user, a guest and a wrong password get
// the same answer after the same hash work. Attempts are budgeted (see
// budget) before the hash: a client without a valid device token draws on
// the account's shared guess budget, so guesses from many addresses still
// add up; a client with one draws on its own, so they cannot lock it out.
// A success returns a new device token (Tokens.DeviceToken) and ends the
// user's oldest sessions beyond Config.MaxSessionsPerUser.
func (s *Service) SignIn(ctx context.Context, req SignInRequest) (*Issued, error) {
	u, err := s.checkSignIn(ctx, req)
	if err != nil {
		return nil, err
	}
	issued, err := s.startSession(ctx, req.Issuer, req.ClientID, u, s.now().UTC())
	if errors.Is(err, model.ErrNotFound) {
		return nil, errBadCredentials // deleted meanwhile
	}
	if err != nil {
		return nil, err
	}
	if issued.Tokens.DeviceToken, err = s.newDeviceToken(u.ID); err != nil {
		return nil, err
	}
	return issued, nil
}

// checkSignIn is SignIn's budgeted password check: the user signing in, or
// errBadCredentials, or a *ThrottledError.
func (s *Service) checkSignIn(ctx context.Context, req SignInRequest) (*model.User, error) {
	u, err := s.store.GetUserByName(ctx, req.Username)
	if errors.Is(err, model.ErrNotFound) && strings.Contains(req.Username, "@") {
		// A username first (names may hold @), then a verified address.
		u, err = s.store.GetUserByEmail(ctx, req.Username)
	}
	if err != nil && !errors.Is(err, model.ErrNotFound) {
		return nil, err
	}
	usable := err == nil && !u.IsAnonymous() && u.PasswordHash != ""
	// The budgets are the account's, whichever way it was named, so the
	// name and the address do not give twice the guesses.
	budgetName := req.Username
	if err == nil {
		budgetName = u.Name
	}
	guesses := s.accountGuesses(budgetName)
	if usable && req.DeviceToken != "" {
		if id, ok := s.checkDeviceToken(req.DeviceToken, u.ID); ok {
			guesses = budget{t: s.byDevice, key: "dev:" + id}
		}
	}
	if err := s.admit(ctx, guesses, s.accountHashes(budgetName), budget{t: s.byIP, key: ipKey(req.ClientIP)}); err != nil {
		var te *ThrottledError
		if errors.As(err, &te) {
			s.observe(ctx, events.Event{Type: events.SignInThrottled, ClientID: req.ClientID, Data: map[string]any{"client_ip": clientIPOf(ctx), "retry_after_s": te.RetrySeconds()}})
		}
		return nil, err
	}
	hash := dummyHash()
	if usable {
		hash = u.PasswordHash
	}
	ok, verr := s.verifyPassword(req.Password, hash)
	if verr != nil {
		return nil, verr
	}
	if !ok || !usable || checkPasswordLength(req.Password) != nil {
		return nil, errBadCredentials
	}
	guesses.reset(ctx)
	return u, nil
}

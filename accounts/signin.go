package accounts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/guestauth/caddy-guestauth/storage"
)

// ThrottledError refuses a request over a limit: Limit is "signin" (too
// many failed password checks), "ip" or "global" (guest creation rate) or
// "cap" (the live guest cap).
type ThrottledError struct {
	Limit      string
	RetryAfter time.Duration
}

func (e *ThrottledError) Error() string {
	switch e.Limit {
	case LimitSignIn:
		return fmt.Sprintf("Too many failed attempts; retry in %d seconds.", e.RetrySeconds())
	case LimitCap:
		return fmt.Sprintf("The site has reached its limit of guest accounts; retry in %d seconds.", e.RetrySeconds())
	}
	return fmt.Sprintf("Too many guest accounts were created; retry in %d seconds.", e.RetrySeconds())
}

// Limits a ThrottledError can name.
const (
	LimitSignIn = "signin"
	LimitIP     = "ip"
	LimitGlobal = "global"
	LimitCap    = "cap"
)

// RetrySeconds is RetryAfter rounded up to whole seconds (at least 1).
func (e *ThrottledError) RetrySeconds() int64 {
	return max(1, int64((e.RetryAfter+time.Second-1)/time.Second))
}

// errBadCredentials is the one answer for an unknown user, a guest and a wrong
// password, so sign-in reveals neither which accounts exist nor which are guests.
var errBadCredentials = &Error{Code: CodeInvalidGrant, Description: "The username or password is incorrect."}

// PasswordSignIn is the password grant for normal users. Guests cannot sign
// in this way until they upgrade. Failures are throttled per account name
// and per client IP; every failure costs one password hash, like a success.
func (s *Service) PasswordSignIn(ctx context.Context, issuer, clientID, username, password, clientIP string) (*Issued, error) {
	acctKey, ipKey := "acct:"+storage.NameKey(username), "ip:"+clientIP
	if wait := max(s.byAcct.Wait(acctKey), s.byIP.Wait(ipKey)); wait > 0 {
		return nil, &ThrottledError{Limit: LimitSignIn, RetryAfter: wait}
	}
	u, err := s.store.GetUserByName(ctx, username)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	hash := dummyHash()
	usable := err == nil && !u.IsAnonymous() && u.PasswordHash != ""
	if usable {
		hash = u.PasswordHash
	}
	ok, verr := VerifyPassword(password, hash)
	if verr != nil {
		return nil, verr
	}
	if !ok || !usable || checkPasswordLength(password) != nil {
		s.byAcct.Fail(acctKey)
		s.byIP.Fail(ipKey)
		return nil, errBadCredentials
	}
	s.byAcct.Reset(acctKey)

	issued, err := s.startSession(ctx, issuer, clientID, u, s.now().UTC())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errBadCredentials // deleted meanwhile
	}
	return issued, err
}

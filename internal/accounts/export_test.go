package accounts

import (
	"context"
	"sync/atomic"
)

// CountNewHashes makes s count the password hashes it computes (new
// passwords and checks alike); call it before using s.
func CountNewHashes(s *Service) *atomic.Int64 {
	n := new(atomic.Int64)
	s.hashHook = func() { n.Add(1) }
	return n
}

// SetHashHook makes s call f before each password hash it starts, so tests
// can count hashes and hold them in flight.
func SetHashHook(s *Service, f func()) { s.hashHook = f }

// SetThrottleMax sets how many keys t may hold.
func SetThrottleMax(t *Throttle, n int) { t.m.Resize(n) }

// ThrottleKeys is how many keys t holds.
func ThrottleKeys(t *Throttle) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m.Len()
}

// PasswordSignIn is SignIn without a device token.
func (s *Service) PasswordSignIn(ctx context.Context, issuer, clientID, username, password, clientIP string) (*Issued, error) {
	return s.SignIn(ctx, SignInRequest{Issuer: issuer, ClientID: clientID, Username: username, Password: password, ClientIP: clientIP})
}

// SetAdmitHook makes s call f each time it admits a password attempt, in
// the critical section, just before it spends the tries.
func SetAdmitHook(s *Service, f func()) { s.admitHook = f }

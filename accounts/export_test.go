package accounts

import "sync/atomic"

// CountNewHashes makes s count the new-password hashes UpdateProfile makes;
// call it before using s.
func CountNewHashes(s *Service) *atomic.Int64 {
	n := new(atomic.Int64)
	s.names.hash = func(pw string, p Argon2Params) (string, error) {
		n.Add(1)
		return HashPassword(pw, p)
	}
	return n
}

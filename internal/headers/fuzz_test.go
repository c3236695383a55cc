package headers

import (
	"testing"
)

// FuzzNameIs: the allocation-free comparison agrees with the
// normalization for every ASCII header name.
func FuzzNameIs(f *testing.F) {
	for _, s := range []string{"X-Auth-User-Id", "x_auth_user_id", "X.Auth.User.Id", "X-AUTH-USER-TAG", "Other"} {
		f.Add(s, "X-Auth-User-Id")
	}
	f.Fuzz(func(t *testing.T, key, name string) {
		for i := 0; i < len(key); i++ {
			if key[i] >= 0x80 {
				return // header names are ASCII tokens
			}
		}
		for i := 0; i < len(name); i++ {
			if name[i] >= 0x80 {
				return
			}
		}
		want := Normalize(key) == Normalize(name)
		if got := nameIs(key, Normalize(name)); got != want {
			t.Fatalf("nameIs(%q, %q) = %v, normalization says %v", key, Normalize(name), got, want)
		}
	})
}

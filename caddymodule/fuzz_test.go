package caddymodule

import (
	"testing"
)

// FuzzHeaderNameIs: the allocation-free comparison agrees with the
// normalization for every ASCII header name.
func FuzzHeaderNameIs(f *testing.F) {
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
		want := normalizeHeaderName(key) == normalizeHeaderName(name)
		if got := headerNameIs(key, normalizeHeaderName(name)); got != want {
			t.Fatalf("headerNameIs(%q, %q) = %v, normalization says %v", key, normalizeHeaderName(name), got, want)
		}
	})
}

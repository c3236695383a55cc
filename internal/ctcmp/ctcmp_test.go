package ctcmp

import (
	"strings"
	"testing"
)

func TestEqual(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"", "", true},
		{"secret", "secret", true},
		{"secret", "secreT", false},
		{"secret", "secret\x00", false},
		{"secret", "", false},
		{"", "secret", false},
		{"s", strings.Repeat("s", 1000), false},
		{strings.Repeat("x", 10000), strings.Repeat("x", 10000), true},
	} {
		if got := Equal([]byte(tc.a), []byte(tc.b)); got != tc.want {
			t.Errorf("Equal(%.10q, %.10q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		want := Sum([]byte(tc.b))
		if got := want.Matches([]byte(tc.a)); got != tc.want {
			t.Errorf("Sum(%.10q).Matches(%.10q) = %v, want %v", tc.b, tc.a, got, tc.want)
		}
	}
}

// The comparison itself always looks at two digests of one fixed size,
// whatever the inputs' lengths: that is what keeps the length secret.
func TestDigestSizeIsFixed(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "a", strings.Repeat("a", 31), strings.Repeat("a", 33), strings.Repeat("a", 4096)} {
		if d := Sum([]byte(s)); len(d) != 32 {
			t.Fatalf("digest of a %d-byte secret has %d bytes", len(s), len(d))
		}
	}
}

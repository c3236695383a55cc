package pages

import (
	"net/http"
	"slices"
	"testing"
)

func TestStripCookie(t *testing.T) {
	for _, c := range []struct {
		in, want []string // want nil: Cookie deleted
	}{
		{[]string{"sess=abc"}, nil},
		{[]string{"a=1; sess=abc; b=2"}, []string{"a=1; b=2"}},
		{[]string{"sess=abc;b=2", "c=3"}, []string{"b=2", "c=3"}},
		{[]string{"a=1", "sess=x; sess=y"}, []string{"a=1"}},
		{[]string{" sess =abc ; a=1"}, []string{"a=1"}},
		{[]string{"Sess=abc; session=1; xsess=2"}, []string{"Sess=abc; session=1; xsess=2"}},
		{[]string{"sess"}, nil},
	} {
		h := http.Header{"Cookie": slices.Clone(c.in)}
		StripCookie(h, "sess")
		if got, ok := h["Cookie"]; c.want == nil && ok || c.want != nil && !slices.Equal(got, c.want) {
			t.Errorf("StripCookie(%q) = %q, want %q", c.in, got, c.want)
		}
		// Go's parser agrees: no session cookie left.
		r := &http.Request{Header: h}
		if _, err := r.Cookie("sess"); err == nil {
			t.Errorf("%q: Go still reads a sess cookie from %q", c.in, h["Cookie"])
		}
	}
}

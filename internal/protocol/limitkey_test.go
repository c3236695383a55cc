package protocol

import "testing"

func TestIPLimitKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		ip     string
		v4, v6 int
		want   string
	}{
		{"203.0.113.7", 32, 64, "203.0.113.7/32"},
		{"203.0.113.7", 24, 64, "203.0.113.0/24"},
		{"::ffff:203.0.113.7", 32, 64, "203.0.113.7/32"},
		{"::ffff:203.0.113.7", 24, 128, "203.0.113.0/24"},
		{"2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2::ffff", 32, 64, "2001:db8:1:2::/64"},
		{"2001:db8:1:2:3:4:5:6", 32, 48, "2001:db8:1::/48"},
		{"2001:db8:1:2:3:4:5:6", 32, 128, "2001:db8:1:2:3:4:5:6/128"},
		{"fe80::1%eth0", 32, 64, "fe80::/64"},
		{"", 32, 64, ""},
		{"not-an-ip", 32, 64, "not-an-ip"},
	} {
		if got := IPLimitKey(tc.ip, tc.v4, tc.v6); got != tc.want {
			t.Errorf("IPLimitKey(%q, %d, %d) = %q, want %q", tc.ip, tc.v4, tc.v6, got, tc.want)
		}
	}
}

package mail

import (
	"testing"
	"time"
)

func TestDefaultBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 5: 80 * time.Second, 11: time.Hour, 40: time.Hour} {
		for range 20 {
			if d := DefaultBackoff(n); d < want/2 || d > want {
				t.Fatalf("DefaultBackoff(%d) = %v, want %v/2..%v", n, d, want, want)
			}
		}
	}
	var total time.Duration
	for n := 1; n < DefaultMaxAttempts; n++ {
		total += DefaultBackoff(n)
	}
	if total < 3*time.Hour {
		t.Fatalf("the attempts span %v: an outage of a few hours loses mail", total)
	}
}

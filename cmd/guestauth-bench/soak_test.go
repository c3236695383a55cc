//go:build linux

package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	m, err := parseMix(defaultMix)
	if err != nil {
		t.Fatal(err)
	}
	if want := (mix{opProxy: 400, opCreate: 20, opRefresh: 10, opUpgrade: 1, opLogout: 1}); m != want {
		t.Fatalf("parseMix(%q) = %v, want %v", defaultMix, m, want)
	}
	if m, err := parseMix("create=5"); err != nil || m != (mix{opCreate: 5}) {
		t.Fatalf("parseMix(create=5) = %v, %v: kinds left out are 0", m, err)
	}
	for _, bad := range []string{"", "proxy=0", "proxy", "proxy=-1", "proxy=x", "sleep=3", "proxy=1,,create=1"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("parseMix(%q) accepted", bad)
		}
	}
}

// TestScheduleSpreadsEachKind: one second of the schedule holds each kind
// exactly its count, and no kind comes in a burst: the gaps between two
// of the same kind stay between half and one and a half times
// total/count.
func TestScheduleSpreadsEachKind(t *testing.T) {
	for _, s := range []string{defaultMix, "proxy=3,create=2", "create=1", "proxy=7,logout=1,upgrade=1"} {
		m, err := parseMix(s)
		if err != nil {
			t.Fatal(err)
		}
		sched := m.schedule()
		if len(sched) != m.total() {
			t.Fatalf("%s: %d requests a second, want %d", s, len(sched), m.total())
		}
		var got mix
		for _, k := range sched {
			got[k]++
		}
		if got != m {
			t.Fatalf("%s: schedule holds %v", s, got)
		}
		// Over two seconds in a row (the schedule repeats), the gap
		// between two requests of a kind is about total/count.
		two := append(append([]opKind{}, sched...), sched...)
		for k := range nOps {
			if m[k] == 0 {
				continue
			}
			ideal := float64(m.total()) / float64(m[k])
			last := -1
			for i, kk := range two {
				if kk != k {
					continue
				}
				if last >= 0 {
					if gap := float64(i - last); gap > max(1.5*ideal, ideal+1) || gap < min(ideal/2, ideal-1) {
						t.Errorf("%s: %s requests %d apart, want about %.1f", s, opNames[k], i-last, ideal)
					}
				}
				last = i
			}
		}
	}
}

func TestMixString(t *testing.T) {
	if got := (mix{opProxy: 4, opLogout: 1}).String(); got != "proxy=4,logout=1 per second per site" {
		t.Fatalf("String() = %q", got)
	}
}

// TestRatioIsPerRound: the large/fresh ratio is taken round by round,
// then the median; a round with no fresh CPU is left out; the ratio row
// shows ×, not µs, and fails above 1.2.
func TestRatioIsPerRound(t *testing.T) {
	s := func(us ...int) []sample {
		var out []sample
		for _, u := range us {
			out = append(out, sample{cpu: time.Duration(u) * time.Microsecond * 10, n: 10})
		}
		return out
	}
	r := &results{groups: map[string]bool{"create": true}, samples: map[string][]sample{
		"create-large": s(110, 600, 150, 100),
		"create-fresh": s(100, 400, 100, 0),
	}}
	if got := r.ratio("create-large", "create-fresh"); got != 1.5 {
		t.Fatalf("ratio = %v, want 1.5 (the median of 1.1, 1.5, 1.5)", got)
	}
	if got := r.ratios("create-large", "create-fresh"); got != "1.10 1.50 1.50" {
		t.Fatalf("ratios = %q", got)
	}
	rows := r.rows()
	if len(rows) != 3 {
		t.Fatalf("rows %+v: want large, fresh and their ratio", rows)
	}
	q := rows[2]
	if q.met() || q.fmt(q.measured) != "×1.50" || q.fmt(q.target) != "×1.20" {
		t.Fatalf("ratio row %+v: want ×1.50 against ×1.20, not met", q)
	}
	if tab := r.table(config{rounds: 4, conc: 8}); !strings.Contains(tab, "| ×1.50 |") || !strings.Contains(tab, "**no**") {
		t.Fatalf("table:\n%s", tab)
	}
}

//go:build linux

package main

import (
	"encoding/xml"
	"os"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestDiffIsPerRound: the difference of two sides is taken round by round
// (they ran next to each other), then the median.
func TestDiffIsPerRound(t *testing.T) {
	s := func(us ...int) []sample {
		var out []sample
		for _, u := range us {
			out = append(out, sample{cpu: time.Duration(u) * time.Microsecond * 10, n: 10})
		}
		return out
	}
	r := &results{samples: map[string][]sample{"a": s(110, 500, 130), "b": s(100, 480, 100)}}
	if got := r.diff("a", "b"); got != 20 {
		t.Fatalf("diff = %v µs, want 20 (the median of 10, 20, 30)", got)
	}
}

// TestTableAndChart: every row is in the table, a missed target is
// flagged, and the chart is well-formed SVG.
func TestTableAndChart(t *testing.T) {
	ms := time.Millisecond
	r := &results{samples: map[string][]sample{}, groups: map[string]bool{"create": true, "password": true}}
	for _, alg := range algs {
		r.samples["create-"+alg] = []sample{{cpu: 100 * ms, wall: time.Second, n: 100}}
	}
	r.samples["upgrade"] = []sample{{cpu: 40 * ms, wall: time.Second, n: 1}}
	r.samples["signin"] = []sample{{cpu: 22 * ms, wall: time.Second, n: 1}}
	r.floors = []floors{{sign2: map[string]time.Duration{"RS256": 2 * ms, "ES256": 80 * time.Microsecond, "EdDSA": 50 * time.Microsecond}, argon2: 20 * ms}}
	tab := r.table(config{rounds: 1, conc: 8})
	for _, want := range []string{"guest creation, RS256", "guest creation, EdDSA", "guest upgrade", "password sign-in", "| 1.00 ms |", "**no**"} {
		if !strings.Contains(tab, want) {
			t.Errorf("table lacks %q:\n%s", want, tab)
		}
	}
	rows := r.rows()
	if !rows[0].met() || rows[1].met() || rows[3].met() || !rows[4].met() {
		t.Errorf("targets: %+v", rows)
	}
	d := xml.NewDecoder(strings.NewReader(r.svg()))
	for {
		if _, err := d.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("chart is not well-formed: %v", err)
			}
			break
		}
	}
}

func TestProcReaders(t *testing.T) {
	if _, err := machineBusy(); err != nil {
		t.Fatal(err)
	}
	c, err := processCPU(os.Getpid())
	if err != nil || c <= 0 {
		t.Fatalf("processCPU: %v %v", c, err)
	}
	if _, _, err := statUserSys(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if rss(os.Getpid()) <= 0 || statusKB(os.Getpid(), "RssAnon") <= 0 {
		t.Fatal("no RSS")
	}
	if n := rssNote(os.Getpid()); !strings.Contains(n, "anonymous") || strings.HasPrefix(n, "0 MB") {
		t.Fatalf("rssNote = %q", n)
	}
}

package dashboard_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/dashboard"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// The report from a real store's counters: days oldest first ending today
// (UTC), each series where it belongs, windows summing the last 30 and 90
// days, conversion by cohort, the median time to upgrade, limit groups,
// unknown series kept apart, the idle count against half the TTL.
func TestBuild(t *testing.T) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "d.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2030, 6, 30, 23, 30, 0, 0, time.FixedZone("UTC-3", -3*3600)) // 2030-07-01 02:30 UTC
	today := time.Date(2030, 7, 1, 0, 0, 0, 0, time.UTC)
	var tl storage.Tally
	tl.Add(today, storage.SeriesGuestsCreated, 10)
	tl.Add(today, storage.SeriesCohortUpgraded, 4)
	tl.Add(today, storage.SeriesUpgraded+"password", 3)
	tl.Add(today, storage.SeriesUpgraded+"passkey", 1)
	tl.Add(today, storage.SeriesTimeToUpgrade+"12", 3) // ~1.5 min
	tl.Add(today, storage.SeriesTimeToUpgrade+"30", 1)
	tl.Add(today, storage.SeriesLimitHit+"ip", 2)
	tl.Add(today, storage.SeriesLimitHit+"cap", 1)
	tl.Add(today, storage.SeriesLimitHit+"signin", 5)
	tl.Add(today, storage.SeriesLimitHit+"email", 7)
	tl.Add(today, "made.up", 1)
	tl.Add(today.AddDate(0, 0, -40), storage.SeriesGuestsCreated, 100) // in 90 days, not in 30
	tl.Add(today.AddDate(0, 0, -40), storage.SeriesCohortUpgraded, 10)
	tl.Add(today.AddDate(0, 0, -200), storage.SeriesGuestsCreated, 1000) // outside
	if err := st.AddDaily(ctx, tl.Counts()); err != nil {
		t.Fatal(err)
	}
	old := &model.User{ID: "g1", Name: "guest_g1", Tag: model.TagGuest, CreatedAt: today.AddDate(0, 0, -20), UpdatedAt: today}
	fresh := &model.User{ID: "g2", Name: "guest_g2", Tag: model.TagGuest, CreatedAt: today, UpdatedAt: today}
	for _, u := range []*model.User{old, fresh} {
		if err := st.CreateUser(ctx, u, nil, nil, nil); err != nil {
			t.Fatal(err)
		}
	}

	rep, err := dashboard.Build(ctx, st, now, 90, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Days) != 90 || rep.Today() != "2030-07-01" || rep.Days[0].Day != "2030-04-03" {
		t.Fatalf("%d days, today %s, first %s", len(rep.Days), rep.Today(), rep.Days[0].Day)
	}
	if rep.Now.Guests != 2 || rep.Now.IdleGuests != 1 || rep.Now.IdleAfter != (15*24*time.Hour).Seconds() {
		t.Fatalf("now %+v", rep.Now)
	}
	d := rep.Days[89]
	if d.Created != 10 || d.Upgraded != 4 || d.UpgradedBy["password"] != 3 || d.CohortUpgraded != 4 || *d.Conversion != 0.4 ||
		d.LimitHits["guest_creation"] != 3 || d.LimitHits["signin"] != 5 {
		t.Fatalf("today %+v", d)
	}
	if m := *d.MedianUpgrade; m < 60 || m > 130 {
		t.Fatalf("median %v s, want about 90", m)
	}
	if rep.Days[0].Conversion != nil || rep.Days[0].MedianUpgrade != nil {
		t.Fatal("a day without guests has a conversion or median")
	}
	if len(rep.Windows) != 2 || rep.Windows[0].Created != 10 || rep.Windows[1].Created != 110 || *rep.Windows[1].Conversion != 0.1273 {
		t.Fatalf("windows %+v %+v", rep.Windows[0], rep.Windows[1])
	}
	if rep.Other["limit.email"] != 7 || rep.Other["made.up"] != 1 {
		t.Fatalf("other %v", rep.Other)
	}
	// Without a TTL there is no idle count.
	if rep, err := dashboard.Build(ctx, st, now, 30, 0); err != nil || rep.Now.IdleGuests != 0 || rep.Now.IdleAfter != 0 || len(rep.Windows) != 1 {
		t.Fatalf("no TTL: %+v, %v", rep, err)
	}
}

// The charts: SVG with its title and description escaped, no script or
// inline style, a bar per non-zero value, lines broken where a value is
// missing; the table holds every value, newest day first.
func TestChartSVGAndTable(t *testing.T) {
	c := &dashboard.Chart{ID: "x", Title: `A <b>"title"</b>`, Desc: "d & e", Labels: []string{"2030-01-01", "2030-01-02", "2030-01-03"},
		Series: []dashboard.Series{{Name: "one", Class: "s1", Values: []float64{1, 0, 3}}, {Name: "two", Class: "s2", Values: []float64{2, 2, 2}}}}
	svg := string(c.SVG())
	if !strings.Contains(svg, `<title id="x-t">A &lt;b&gt;&#34;title&#34;&lt;/b&gt;</title>`) || !strings.Contains(svg, "d &amp; e") {
		t.Fatalf("not escaped: %s", svg)
	}
	if strings.Contains(svg, "<script") || strings.Contains(svg, "style=") {
		t.Fatal("script or inline style")
	}
	if n := strings.Count(svg, `<rect class="bar`); n != 5 {
		t.Fatalf("%d bars, want 5", n)
	}
	if rows := c.Rows(); len(rows) != 3 || strings.Join(rows[0], ",") != "2030-01-03,3,2" || strings.Join(c.Header(), ",") != "Day (UTC),one,two" {
		t.Fatalf("table %v %v", c.Header(), rows)
	}
	l := &dashboard.Chart{ID: "l", Title: "t", Labels: []string{"a", "b", "c", "d"}, Lines: true, Percent: true,
		Series: []dashboard.Series{{Name: "p", Class: "s2", Values: []float64{0.1, 0, 0.2, 0.3}, Missing: []bool{false, true, false, false}}}}
	svg = string(l.SVG())
	if strings.Count(svg, "<polyline") != 1 || strings.Count(svg, "<circle") != 3 {
		t.Fatalf("line: %s", svg)
	}
	if rows := l.Rows(); rows[2][1] != "–" || rows[0][1] != "30.0 %" {
		t.Fatalf("line table %v", rows)
	}
}

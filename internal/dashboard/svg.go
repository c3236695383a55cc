package dashboard

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strconv"
	"strings"
)

// Series is one named row of values of a chart, drawn with the CSS class
// Class (the pages' stylesheet gives each class its colours for light and
// dark mode).
type Series struct {
	Name, Class string
	Values      []float64
	// Missing marks values that do not exist (a conversion of a day
	// without guests): no bar or point, "–" in the table.
	Missing []bool
}

// Chart is one chart: stacked bars per day, or lines (Lines) of
// percentages (Percent). Its SVG draws it; its table (Header, Rows) holds
// the same numbers, for screen readers and for reading exact values.
type Chart struct {
	ID, Title string
	// Desc says in words what the chart shows.
	Desc    string
	Labels  []string
	Series  []Series
	Lines   bool
	Percent bool
}

const (
	chartW, chartH = 720, 220
	padL, padR     = 48, 8
	padT, padB     = 12, 28
)

func (c *Chart) format(v float64) string {
	if c.Percent {
		return strconv.FormatFloat(v*100, 'f', 1, 64) + " %"
	}
	if v == math.Trunc(v) {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func (c *Chart) max() float64 {
	m := 0.0
	for i := range c.Labels {
		sum := 0.0
		for _, s := range c.Series {
			if i >= len(s.Values) || (s.Missing != nil && s.Missing[i]) {
				continue
			}
			if c.Lines {
				m = max(m, s.Values[i])
			} else {
				sum += s.Values[i]
			}
		}
		m = max(m, sum)
	}
	if c.Percent {
		return max(niceCeil(m), 0.01)
	}
	return max(niceCeil(m), 1)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// SVG is the chart as an inline SVG element: no script, no inline style
// (the page's Content-Security-Policy allows neither), colours from CSS
// classes. It is an image with a title and description; the numbers are
// in the table that follows it.
func (c *Chart) SVG() template.HTML {
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-labelledby="%s-t %s-d" preserveAspectRatio="none">`, chartW, chartH, esc(c.ID), esc(c.ID))
	fmt.Fprintf(&b, `<title id="%s-t">%s</title><desc id="%s-d">%s</desc>`, esc(c.ID), esc(c.Title), esc(c.ID), esc(c.Desc))
	top := c.max()
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	y := func(v float64) float64 { return padT + plotH - v/top*plotH }
	// Grid: 0, half and top.
	for _, f := range []float64{0, 0.5, 1} {
		yy := y(top * f)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>`, padL, chartW-padR, yy, yy)
		fmt.Fprintf(&b, `<text class="axis" x="%d" y="%.1f" text-anchor="end">%s</text>`, padL-4, yy+4, esc(c.format(top*f)))
	}
	n := len(c.Labels)
	if n == 0 {
		b.WriteString(`</svg>`)
		return template.HTML(b.String()) //nolint:gosec // every text above is escaped
	}
	step := plotW / float64(n)
	if c.Lines {
		for _, s := range c.Series {
			var pts []string
			flush := func() {
				if len(pts) > 1 {
					fmt.Fprintf(&b, `<polyline class="line %s" points="%s"/>`, esc(s.Class), strings.Join(pts, " "))
				}
				pts = pts[:0]
			}
			for i := range n {
				if i >= len(s.Values) || (s.Missing != nil && s.Missing[i]) {
					flush()
					continue
				}
				x, yy := padL+step*(float64(i)+0.5), y(s.Values[i])
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, yy))
				fmt.Fprintf(&b, `<circle class="dot %s" cx="%.1f" cy="%.1f" r="2.5"/>`, esc(s.Class), x, yy)
			}
			flush()
		}
	} else {
		bw := max(step*0.8, 1)
		for i := range n {
			base := 0.0
			for _, s := range c.Series {
				if i >= len(s.Values) || s.Values[i] <= 0 {
					continue
				}
				v := s.Values[i]
				fmt.Fprintf(&b, `<rect class="bar %s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>`,
					esc(s.Class), padL+step*float64(i)+(step-bw)/2, y(base+v), bw, y(base)-y(base+v))
				base += v
			}
		}
	}
	// The first, middle and last days under the axis.
	for _, i := range []int{0, n / 2, n - 1} {
		anchor := "middle"
		switch i {
		case 0:
			anchor = "start"
		case n - 1:
			anchor = "end"
		}
		x := padL + step*(float64(i)+0.5)
		switch i {
		case 0:
			x = padL
		case n - 1:
			x = chartW - padR
		}
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%d" text-anchor="%s">%s</text>`, x, chartH-8, anchor, esc(c.Labels[i]))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // every text above is escaped
}

// Header is the table's column headings: the day, then each series.
func (c *Chart) Header() []string {
	h := []string{"Day (UTC)"}
	for _, s := range c.Series {
		h = append(h, s.Name)
	}
	return h
}

// Rows are the table's rows, newest day first.
func (c *Chart) Rows() [][]string {
	rows := make([][]string, 0, len(c.Labels))
	for i := len(c.Labels) - 1; i >= 0; i-- {
		row := []string{c.Labels[i]}
		for _, s := range c.Series {
			switch {
			case i >= len(s.Values) || (s.Missing != nil && s.Missing[i]):
				row = append(row, "–")
			default:
				row = append(row, c.format(s.Values[i]))
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// Charts are the report's charts, over its days.
func (r *Report) Charts() []*Chart {
	labels := make([]string, len(r.Days))
	col := func(f func(d *Day) (float64, bool)) ([]float64, []bool) {
		v, miss := make([]float64, len(r.Days)), make([]bool, len(r.Days))
		for i := range r.Days {
			labels[i] = r.Days[i].Day
			x, ok := f(&r.Days[i])
			v[i], miss[i] = x, !ok
		}
		return v, miss
	}
	series := func(name, class string, f func(d *Day) float64) Series {
		v, _ := col(func(d *Day) (float64, bool) { return f(d), true })
		return Series{Name: name, Class: class, Values: v}
	}
	created := series("Guests created", "s1", func(d *Day) float64 { return float64(d.Created) })
	var ups []Series
	for i, m := range Methods {
		ups = append(ups, series("Upgraded: "+m, "s"+strconv.Itoa(i+1), func(d *Day) float64 { return float64(d.UpgradedBy[m]) }))
	}
	conv, convMiss := col(func(d *Day) (float64, bool) {
		if d.Conversion == nil {
			return 0, false
		}
		return *d.Conversion, true
	})
	med, medMiss := col(func(d *Day) (float64, bool) {
		if d.MedianUpgrade == nil {
			return 0, false
		}
		return *d.MedianUpgrade / 60, true
	})
	return []*Chart{
		{ID: "created", Title: "Guests created per day", Desc: "Bars: guests created each UTC day.", Labels: labels, Series: []Series{created}},
		{ID: "upgraded", Title: "Guests upgraded per day, by method", Desc: "Stacked bars: upgrades each UTC day, by how the guest became a member.", Labels: labels, Series: ups},
		{ID: "conversion", Title: "Conversion by creation day", Desc: "Line: the share of each day's new guests upgraded since.", Labels: labels, Lines: true, Percent: true,
			Series: []Series{{Name: "Conversion", Class: "s2", Values: conv, Missing: convMiss}}},
		{ID: "ttu", Title: "Median time to upgrade (minutes)", Desc: "Line: the median minutes from a guest's creation to its upgrade, for the upgrades of each UTC day.", Labels: labels, Lines: true,
			Series: []Series{{Name: "Median minutes", Class: "s3", Values: med, Missing: medMiss}}},
		{ID: "lifecycle", Title: "Guests merged, expired and users deleted per day", Desc: "Stacked bars: guests merged into a member, guests expired, users deleted, each UTC day.", Labels: labels, Series: []Series{
			series("Merged", "s2", func(d *Day) float64 { return float64(d.Merged) }),
			series("Expired", "s4", func(d *Day) float64 { return float64(d.Expired) }),
			series("Deleted", "s5", func(d *Day) float64 { return float64(d.Deleted) }),
		}},
		{ID: "limits", Title: "Requests refused by a limit per day", Desc: "Stacked bars: refusals of the guest creation limits and of the sign-in limit, each UTC day.", Labels: labels, Series: []Series{
			series("Guest creation", "s4", func(d *Day) float64 { return float64(d.LimitHits["guest_creation"]) }),
			series("Sign-in", "s5", func(d *Day) float64 { return float64(d.LimitHits["signin"]) }),
		}},
	}
}

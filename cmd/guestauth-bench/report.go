//go:build linux

package main

import (
	"fmt"
	"html"
	"slices"
	"strings"
	"time"
)

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func us(d time.Duration) float64 { return float64(d) / 1e3 }

// perOp is the median CPU per operation of a side, in µs.
func (r *results) perOp(name string) float64 {
	var xs []float64
	for _, s := range r.samples[name] {
		xs = append(xs, us(s.perOp()))
	}
	return median(xs)
}

// diff is the median over rounds of (a − b) per operation, in µs: the
// sides of one round ran next to each other on the same machine.
func (r *results) diff(a, b string) float64 {
	var xs []float64
	for i := range min(len(r.samples[a]), len(r.samples[b])) {
		xs = append(xs, us(r.samples[a][i].perOp())-us(r.samples[b][i].perOp()))
	}
	return median(xs)
}

// sysShare is the median share of a side's CPU spent in the kernel.
func (r *results) sysShare(name string) float64 {
	var xs []float64
	for _, s := range r.samples[name] {
		if s.cpu > 0 {
			xs = append(xs, float64(s.sys)/float64(s.cpu))
		}
	}
	return median(xs)
}

func (r *results) rate(name string) float64 {
	var xs []float64
	for _, s := range r.samples[name] {
		xs = append(xs, s.rate())
	}
	return median(xs)
}

func (r *results) floor(f func(floors) time.Duration) float64 {
	var xs []float64
	for _, fl := range r.floors {
		xs = append(xs, us(f(fl)))
	}
	return median(xs)
}

// row is one line of the table and one bar group of the chart; values
// are in µs.
type row struct {
	what     string
	measured float64
	floor    float64
	target   float64
	extra    string // more figures
	note     string
	isRatio  bool // the values are ratios, not µs
}

func (w row) met() bool { return w.measured <= w.target }

// fmt shows a value of the row in its unit.
func (w row) fmt(v float64) string {
	if w.isRatio {
		return fmt.Sprintf("×%.2f", v)
	}
	return fmtUS(v)
}

func fmtUS(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1f ms", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f ms", v/1000)
	default:
		return fmt.Sprintf("%.1f µs", v)
	}
}

func (r *results) rows() []row {
	var rows []row
	if r.groups["create"] && len(r.samples["create-large"]) > 0 {
		rows = append(rows, r.largeStoreRows()...)
	} else if r.groups["create"] {
		for _, alg := range algs {
			m := r.perOp("create-" + alg)
			fl := r.floor(func(f floors) time.Duration { return f.sign2[alg] })
			target := 300.0
			if alg == "RS256" {
				target = 2900
			}
			w := row{what: "guest creation, " + alg + ", CPU per guest", measured: m, floor: fl, target: target,
				extra: fmt.Sprintf("%.0f guests/s; %.0f%% in the kernel", r.rate("create-"+alg), 100*r.sysShare("create-"+alg)), note: "floor: two signatures"}
			if alg == "ES256" {
				w.note += "; target also ≥ 2,500 guests/s"
			}
			rows = append(rows, w)
		}
	}
	if r.groups["hit"] {
		own := r.diff("hit-guest", "hit-plain4")
		rows = append(rows, row{
			what: "proxied request, token cache hit: guest_auth's own work (vs plain + same 4 headers)", measured: own, target: 5,
			extra: fmt.Sprintf("vs plain +%.1f µs (ratio %.2f); plain+4 headers vs plain +%.1f µs; the same in 1 header +%.1f µs; plain %.1f µs/req",
				r.diff("hit-guest", "hit-plain"), r.perOp("hit-guest")/r.perOp("hit-plain"),
				r.diff("hit-plain4", "hit-plain"), r.diff("hit-plain1", "hit-plain"), r.perOp("hit-plain")),
		})
	}
	if r.groups["miss"] {
		for _, alg := range []string{"RS256", "ES256"} {
			fl := r.floor(func(f floors) time.Duration { return f.verify[alg] })
			g, p := "miss-guest-"+alg, "miss-plain-"+alg
			rows = append(rows, row{
				what: "proxied request, cache miss, " + alg + " (vs plain)", measured: r.diff(g, p), floor: fl, target: fl + 20,
				extra: fmt.Sprintf("ratio %.2f", r.perOp(g)/r.perOp(p)), note: "floor: one verification",
			})
		}
	}
	if r.groups["authorize"] {
		rows = append(rows, r.authorizeRows()...)
	}
	if r.groups["password"] {
		fl := r.floor(func(f floors) time.Duration { return f.argon2 })
		for _, name := range []string{"upgrade", "signin"} {
			what := map[string]string{"upgrade": "guest upgrade with a password, CPU", "signin": "password sign-in, CPU"}[name]
			m := r.perOp(name)
			rows = append(rows, row{what: what, measured: m, floor: fl, target: 1.2 * fl,
				extra: fmt.Sprintf("%.2f× one hash; %.0f%% of it in the kernel", m/fl, 100*r.sysShare(name)), note: "floor: one argon2id hash (19 MiB, t=2)"})
		}
	}
	return rows
}

func (r *results) table(c config) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%d interleaved rounds, %d connections; Caddy CPU per operation, medians.\n\n", c.rounds, c.conc)
	sb.WriteString("| what | measured | floor / anchor | target | met | more |\n|---|---|---|---|---|---|\n")
	for _, w := range r.rows() {
		fl := "—"
		if w.floor > 0 {
			fl = fmt.Sprintf("%s (%s, ×%.2f)", fmtUS(w.floor), w.note, w.measured/w.floor)
		} else if w.note != "" {
			fl = w.note
		}
		met := "yes"
		if !w.met() {
			met = "**no**"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | ≤ %s | %s | %s |\n", w.what, w.fmt(w.measured), fl, w.fmt(w.target), met, w.extra)
	}
	var skewed, retried int
	for _, ss := range r.samples {
		for _, s := range ss {
			retried += s.retried
			if s.skewed {
				skewed++
			}
		}
	}
	fmt.Fprintf(&sb, "\nRounds re-run for foreign load: %d; kept although disturbed: %d.\n", retried, skewed)
	for _, n := range r.notes {
		fmt.Fprintf(&sb, "%s.\n", n)
	}
	return sb.String()
}

// svg draws one bar pair per row (measured, and the floor when there is
// one) on the row's own scale, with the target as a red tick.
func (r *results) svg() string {
	rows := r.rows()
	const w, rowH, left, barW = 980, 76, 360, 520
	h := 50 + rowH*len(rows) + 30
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&sb, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">guest_auth: Caddy CPU per operation (medians), floor and target</text>`+"\n")
	fmt.Fprintf(&sb, `<rect x="%d" y="32" width="10" height="10" fill="#3b6fb6"/><text x="%d" y="41">measured</text>`, left, left+14)
	fmt.Fprintf(&sb, `<rect x="%d" y="32" width="10" height="10" fill="#bbb"/><text x="%d" y="41">floor</text>`, left+90, left+104)
	fmt.Fprintf(&sb, `<rect x="%d" y="30" width="3" height="14" fill="#d22"/><text x="%d" y="41">target</text>`+"\n", left+160, left+168)
	for i, row := range rows {
		y := 50 + i*rowH
		scale := max(row.measured, row.target, row.floor) * 1.05
		px := func(v float64) int { return int(float64(barW) * max(v, 0) / scale) }
		label := row.what
		if r := []rune(label); len(r) > 56 {
			label = string(r[:55]) + "…"
		}
		fmt.Fprintf(&sb, `<text x="10" y="%d">%s</text>`+"\n", y+20, html.EscapeString(label))
		fmt.Fprintf(&sb, `<text x="10" y="%d" fill="#555" font-size="11">%s</text>`+"\n", y+58, html.EscapeString(row.extra))
		color := "#3b6fb6"
		if !row.met() {
			color = "#c77a12"
		}
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%d" height="18" fill="%s"/><text x="%d" y="%d">%s</text>`+"\n",
			left, y+6, px(row.measured), color, left+px(row.measured)+4, y+20, row.fmt(row.measured))
		if row.floor > 0 {
			fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="%d" height="12" fill="#bbb"/><text x="%d" y="%d" fill="#555">%s</text>`+"\n",
				left, y+28, px(row.floor), left+px(row.floor)+4, y+38, fmtUS(row.floor))
		}
		fmt.Fprintf(&sb, `<rect x="%d" y="%d" width="3" height="40" fill="#d22"/>`+"\n", left+px(row.target)-1, y+2)
	}
	fmt.Fprintf(&sb, `<text x="10" y="%d" fill="#555">Orange bars miss their target. Each row has its own scale.</text>`+"\n", h-10)
	sb.WriteString("</svg>\n")
	return sb.String()
}

// Package dashboard computes the site owner's dashboard from the store's
// counters, never from a scan of the users: the population now (the
// store's O(1) counters, and one bounded index count), and per UTC day the
// guests created, upgraded by method, merged, expired and deleted, the
// conversion of each day's cohort, the median time to upgrade and the
// limit refusals (the daily counters, storage.DailyStore). The same Report
// is the admin page's charts and tables, the admin API's JSON, and (the
// counters behind it) Prometheus' series. It also draws the charts, as
// SVG with no script.
package dashboard

import (
	"context"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/guestauth/caddy-guestauth/storage"
)

// Store is what the report reads.
type Store interface {
	Counts(ctx context.Context) (*storage.Stats, error)
	Daily(ctx context.Context, from, to string) ([]storage.DayCount, error)
	// CountIdleGuests counts the users ScanIdleGuests(before) would visit.
	CountIdleGuests(ctx context.Context, before time.Time) (int64, error)
}

// Methods are the upgrade methods, in the order they are shown.
var Methods = []string{"password", "provider", "passkey", "email"}

// Limits group the limit refusals (metrics' limit labels) as the dashboard
// shows them: guest creation (per IP, global, population cap) and sign-in
// (failed passwords).
var Limits = map[string][]string{
	"guest_creation": {"ip", "global", "cap"},
	"signin":         {"signin"},
}

// Now is the population at the time of the report.
type Now struct {
	Guests  int64 `json:"guests"`
	Members int64 `json:"members"`
	Kept    int64 `json:"kept_guests"`
	// Sessions are the stored sessions: live, or ended less than a sweep
	// ago (the sweeper deletes ended sessions every minute).
	Sessions int64 `json:"sessions"`
	// IdleGuests are the guests (and other ephemeral users) not kept whose
	// last activity is older than half the guest TTL: those the next half
	// TTL expires unless they come back. IdleAfter is that half TTL; both
	// are 0 without a TTL.
	IdleGuests int64   `json:"idle_guests"`
	IdleAfter  float64 `json:"idle_after_seconds"`
}

// Day is one UTC day's counts.
type Day struct {
	Day     string `json:"day"`
	Created int64  `json:"guests_created"`
	// Upgraded counts the upgrades made that day, by method.
	Upgraded   int64            `json:"guests_upgraded"`
	UpgradedBy map[string]int64 `json:"upgraded_by_method"`
	Merged     int64            `json:"guests_merged"`
	Expired    int64            `json:"guests_expired"`
	Deleted    int64            `json:"users_deleted"`
	// CohortUpgraded counts the guests created that day that have been
	// upgraded since (on any day); Conversion is CohortUpgraded ÷ Created
	// (null when none were created).
	CohortUpgraded int64    `json:"cohort_upgraded"`
	Conversion     *float64 `json:"conversion"`
	// MedianUpgrade is the median time from creation to upgrade of that
	// day's upgrades, in seconds (null without any), within a factor √2
	// (storage.TTUBuckets).
	MedianUpgrade *float64 `json:"median_upgrade_seconds"`
	// LimitHits counts the requests refused by each limit group.
	LimitHits map[string]int64 `json:"limit_hits"`

	ttu []int64
}

// Window sums the last Days days.
type Window struct {
	Days           int              `json:"days"`
	Created        int64            `json:"guests_created"`
	Upgraded       int64            `json:"guests_upgraded"`
	UpgradedBy     map[string]int64 `json:"upgraded_by_method"`
	Merged         int64            `json:"guests_merged"`
	Expired        int64            `json:"guests_expired"`
	Deleted        int64            `json:"users_deleted"`
	CohortUpgraded int64            `json:"cohort_upgraded"`
	Conversion     *float64         `json:"conversion"`
	MedianUpgrade  *float64         `json:"median_upgrade_seconds"`
	LimitHits      map[string]int64 `json:"limit_hits"`
}

// Report is the dashboard.
type Report struct {
	At  time.Time `json:"at"`
	Now Now       `json:"now"`
	// Days are the last len(Days) UTC days, oldest first, today last.
	Days []Day `json:"days"`
	// Windows sum the last 30 and 90 days (those within Days).
	Windows []Window `json:"windows"`
	// Other counts daily series the report does not show by name (an
	// upgrade method or limit added later), summed over Days.
	Other map[string]int64 `json:"other,omitempty"`
}

// Build reads the report for the days days up to now's UTC day. guestTTL
// is the guest idle TTL (0: guests do not expire; no idle count).
func Build(ctx context.Context, st Store, now time.Time, days int, guestTTL time.Duration) (*Report, error) {
	days = max(1, min(days, 366))
	now = now.UTC()
	r := &Report{At: now}
	stats, err := st.Counts(ctx)
	if err != nil {
		return nil, err
	}
	r.Now = Now{Guests: stats.LiveGuests, Members: stats.NormalUsers, Kept: stats.KeptGuests, Sessions: stats.Sessions}
	if guestTTL > 0 {
		r.Now.IdleAfter = (guestTTL / 2).Seconds()
		if r.Now.IdleGuests, err = st.CountIdleGuests(ctx, now.Add(-guestTTL/2)); err != nil {
			return nil, err
		}
	}
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	first := today.AddDate(0, 0, -(days - 1))
	counts, err := st.Daily(ctx, storage.Day(first), storage.Day(today))
	if err != nil {
		return nil, err
	}
	idx := map[string]int{}
	for i := range days {
		d := storage.Day(first.AddDate(0, 0, i))
		idx[d] = i
		r.Days = append(r.Days, Day{Day: d, UpgradedBy: map[string]int64{}, LimitHits: map[string]int64{}, ttu: make([]int64, storage.TTUBuckets)})
	}
	limitGroup := map[string]string{}
	for g, ls := range Limits {
		for _, l := range ls {
			limitGroup[l] = g
		}
	}
	for _, c := range counts {
		i, ok := idx[c.Day]
		if !ok {
			continue
		}
		d := &r.Days[i]
		switch s := c.Series; {
		case s == storage.SeriesGuestsCreated:
			d.Created += c.N
		case s == storage.SeriesCohortUpgraded:
			d.CohortUpgraded += c.N
		case s == storage.SeriesMerged:
			d.Merged += c.N
		case s == storage.SeriesExpired:
			d.Expired += c.N
		case s == storage.SeriesDeleted:
			d.Deleted += c.N
		case strings.HasPrefix(s, storage.SeriesUpgraded):
			d.Upgraded += c.N
			d.UpgradedBy[strings.TrimPrefix(s, storage.SeriesUpgraded)] += c.N
		case strings.HasPrefix(s, storage.SeriesTimeToUpgrade):
			if b, err := strconv.Atoi(strings.TrimPrefix(s, storage.SeriesTimeToUpgrade)); err == nil && b >= 0 && b < storage.TTUBuckets {
				d.ttu[b] += c.N
			}
		case strings.HasPrefix(s, storage.SeriesLimitHit):
			l := strings.TrimPrefix(s, storage.SeriesLimitHit)
			if g, ok := limitGroup[l]; ok {
				d.LimitHits[g] += c.N
			} else {
				if r.Other == nil {
					r.Other = map[string]int64{}
				}
				r.Other[s] += c.N
			}
		default:
			if r.Other == nil {
				r.Other = map[string]int64{}
			}
			r.Other[s] += c.N
		}
	}
	for i := range r.Days {
		d := &r.Days[i]
		d.Conversion = ratio(d.CohortUpgraded, d.Created)
		d.MedianUpgrade = median(d.ttu)
	}
	for _, n := range []int{30, 90} {
		if n <= days {
			r.Windows = append(r.Windows, r.window(n))
		}
	}
	if len(r.Windows) == 0 {
		r.Windows = append(r.Windows, r.window(days))
	}
	return r, nil
}

func (r *Report) window(n int) Window {
	w := Window{Days: n, UpgradedBy: map[string]int64{}, LimitHits: map[string]int64{}}
	ttu := make([]int64, storage.TTUBuckets)
	for _, d := range r.Days[len(r.Days)-n:] {
		w.Created += d.Created
		w.Upgraded += d.Upgraded
		w.Merged += d.Merged
		w.Expired += d.Expired
		w.Deleted += d.Deleted
		w.CohortUpgraded += d.CohortUpgraded
		for k, v := range d.UpgradedBy {
			w.UpgradedBy[k] += v
		}
		for k, v := range d.LimitHits {
			w.LimitHits[k] += v
		}
		for i, v := range d.ttu {
			ttu[i] += v
		}
	}
	w.Conversion = ratio(w.CohortUpgraded, w.Created)
	w.MedianUpgrade = median(ttu)
	return w
}

func ratio(a, b int64) *float64 {
	if b <= 0 {
		return nil
	}
	v := math.Round(float64(a)/float64(b)*10000) / 10000
	return &v
}

func median(hist []int64) *float64 {
	m, ok := storage.TTUMedian(hist)
	if !ok {
		return nil
	}
	v := math.Round(m.Seconds())
	return &v
}

// Today is the report's last day, today (UTC).
func (r *Report) Today() string {
	if len(r.Days) == 0 {
		return storage.Day(r.At)
	}
	return r.Days[len(r.Days)-1].Day
}

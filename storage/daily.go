package storage

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Daily counters: per UTC day, how many guests were created, upgraded (by
// method), merged, expired and deleted, how many refusals each limit made,
// and the cohort and time-to-upgrade figures behind the conversion charts.
// They are kept incrementally, never computed by scanning users: a write
// that reports events adds its counts in its own transaction (TxResult's
// Tally, filled by the write's Events), and counts that no write carries
// (limit refusals, which happen on a hot path) are added in batches by
// AddDaily. So the dashboard reads at most days×series rows, however many
// users there are.
//
// Days are UTC calendar days ("2006-01-02"): a count is added to the day, in
// UTC, of the time it stands for, whatever the server's time zone.

// Series names of the daily counters.
const (
	SeriesGuestsCreated = "guests_created"
	// SeriesUpgraded is followed by the method: upgraded.password,
	// upgraded.provider, upgraded.passkey, upgraded.email. Counted on the
	// day of the upgrade.
	SeriesUpgraded = "upgraded."
	// SeriesCohortUpgraded counts upgrades on the guest's creation day (its
	// cohort), so cohort conversion is cohort_upgraded ÷ guests_created of
	// the same day.
	SeriesCohortUpgraded = "cohort_upgraded"
	// SeriesTimeToUpgrade is followed by a bucket number (see TTUBucket):
	// the time from creation to upgrade, counted on the day of the upgrade.
	SeriesTimeToUpgrade = "ttu."
	SeriesMerged        = "merged"
	SeriesExpired       = "expired"
	SeriesDeleted       = "deleted"
	// SeriesLimitHit is followed by the limit's name (guest_creation,
	// signin): requests that limit refused.
	SeriesLimitHit = "limit."
)

// DayFormat is how a day is written: a UTC date.
const DayFormat = "2006-01-02"

// Day is the UTC day of t.
func Day(t time.Time) string { return t.UTC().Format(DayFormat) }

// DayCount is one daily counter.
type DayCount struct {
	Day    string `json:"day"`
	Series string `json:"series"`
	N      int64  `json:"n"`
}

// TTUBuckets is the number of time-to-upgrade buckets. Bucket 0 holds
// upgrades within 2 seconds of creation; bucket i ≥ 1 those taking
// [2^(i/2), 2^((i+1)/2)) seconds: half a power of two each, so a median
// read from them is within a factor √2 (−29 %, +41 %) of the exact one.
// The last bucket (2^30 s, 34 years) holds everything slower.
const TTUBuckets = 60

// TTUBucket is the bucket of a creation-to-upgrade time d.
func TTUBucket(d time.Duration) int {
	s := d.Seconds()
	if s < 2 {
		return 0
	}
	return min(int(math.Floor(2*math.Log2(s))), TTUBuckets-1)
}

// TTUBucketBounds are the bounds of bucket i: [lo, hi).
func TTUBucketBounds(i int) (lo, hi time.Duration) {
	sec := func(x float64) time.Duration { return time.Duration(x * float64(time.Second)) }
	if i <= 1 { // bucket 1, [√2 s, 2 s), stays empty: bucket 0 takes it
		return 0, 2 * time.Second
	}
	return sec(math.Pow(2, float64(i)/2)), sec(math.Pow(2, float64(i+1)/2))
}

// TTUMedian is the median of a histogram of time-to-upgrade buckets (the
// geometric middle of the bucket holding the middle upgrade), and false
// when it is empty.
func TTUMedian(hist []int64) (time.Duration, bool) {
	var total int64
	for _, n := range hist {
		total += n
	}
	if total == 0 {
		return 0, false
	}
	half := (total + 1) / 2
	var seen int64
	for i, n := range hist {
		seen += n
		if seen >= half {
			if i == 0 {
				return time.Second, true
			}
			lo, hi := TTUBucketBounds(i)
			return time.Duration(math.Sqrt(float64(lo) * float64(hi))), true
		}
	}
	return 0, false
}

// Tally collects the daily counts of one write, or of a batch. The zero
// value is ready; a nil *Tally ignores Add. It is safe for concurrent use.
type Tally struct {
	mu sync.Mutex
	m  map[[2]string]int64
}

// Add adds n to series on the UTC day of at.
func (t *Tally) Add(at time.Time, series string, n int64) {
	if t == nil || n == 0 || series == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[[2]string]int64{}
	}
	t.m[[2]string{Day(at), series}] += n
}

// Reset forgets every count (a backend running a transaction again calls
// the write's Events again with its Tally reset).
func (t *Tally) Reset() {
	if t == nil {
		return
	}
	t.mu.Lock()
	clear(t.m)
	t.mu.Unlock()
}

// Take returns the counts and forgets them.
func (t *Tally) Take() []DayCount {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.counts()
	clear(t.m)
	return out
}

// Counts returns the counts, sorted by day then series: the order a
// backend updates its counter rows in, so that concurrent writes lock them
// in one order.
func (t *Tally) Counts() []DayCount {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts()
}

func (t *Tally) counts() []DayCount {
	out := make([]DayCount, 0, len(t.m))
	for k, n := range t.m {
		if n != 0 {
			out = append(out, DayCount{Day: k[0], Series: k[1], N: n})
		}
	}
	SortDayCounts(out)
	return out
}

// SortDayCounts sorts counts by day, then series.
func SortDayCounts(c []DayCount) {
	slices.SortFunc(c, func(a, b DayCount) int {
		if d := strings.Compare(a.Day, b.Day); d != 0 {
			return d
		}
		return strings.Compare(a.Series, b.Series)
	})
}

// CheckDayCount refuses a count a backend cannot store: a day that is not
// a date, an empty or overlong series.
func CheckDayCount(c DayCount) error {
	if _, err := time.Parse(DayFormat, c.Day); err != nil {
		return badDayError(c.Day)
	}
	if c.Series == "" || len(c.Series) > 64 {
		return badDayError(c.Series)
	}
	return nil
}

type badDayError string

func (e badDayError) Error() string { return "bad daily counter " + strconv.Quote(string(e)) }

// DailyStore is the part of Backend that keeps the daily counters.
type DailyStore interface {
	// AddDaily adds counts to the daily counters, at once (counts to the
	// same day and series add up). It is for counts no write carries
	// (limit refusals); a write's own counts go through its Events.
	AddDaily(ctx context.Context, counts []DayCount) error
	// Daily returns the non-zero counters of the days from through to
	// (UTC dates, inclusive), sorted by day then series, from one
	// consistent read.
	Daily(ctx context.Context, from, to string) ([]DayCount, error)
	// CompactCounters tidies the counters of the past (a backend that
	// spreads counters over several rows, against contention, folds
	// them), so the reads above stay as cheap as the days they read. It
	// changes no count; the store's owner calls it now and then (every
	// minute).
	CompactCounters(ctx context.Context, now time.Time) error
}

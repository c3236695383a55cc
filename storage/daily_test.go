package storage_test

import (
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/storage"
)

// Days are UTC days, whatever the zone of the time counted: a count made
// at 23:30 in New York on Jan 1 is a Jan 2 (UTC) count, one at 00:30 in
// Tokyo on Jan 2 is a Jan 1 count; the last nanosecond of a day and the
// first of the next are on different days.
func TestTallyUTCDays(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	tokyo := time.FixedZone("JST", 9*3600)
	var tl storage.Tally
	tl.Add(time.Date(2030, 1, 1, 23, 30, 0, 0, ny), "a", 1)   // 2030-01-02 04:30 UTC
	tl.Add(time.Date(2030, 1, 2, 0, 30, 0, 0, tokyo), "a", 1) // 2030-01-01 15:30 UTC
	tl.Add(time.Date(2030, 1, 1, 23, 59, 59, 999999999, time.UTC), "a", 1)
	tl.Add(time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC), "a", 1)
	tl.Add(time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC), "b", 2)
	tl.Add(time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC), "zero", 0)
	got := tl.Counts()
	want := []storage.DayCount{{Day: "2030-01-01", Series: "a", N: 2}, {Day: "2030-01-02", Series: "a", N: 2}, {Day: "2030-01-02", Series: "b", N: 2}}
	if len(got) != len(want) {
		t.Fatalf("counts %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("counts %v, want %v", got, want)
		}
	}
	if taken := tl.Take(); len(taken) != 3 || len(tl.Counts()) != 0 {
		t.Fatalf("Take: %v, then %v", taken, tl.Counts())
	}
	var nilTally *storage.Tally
	nilTally.Add(time.Now(), "a", 1) // ignored, no panic
	if storage.Day(time.Date(2030, 12, 31, 20, 0, 0, 0, time.FixedZone("-05", -5*3600))) != "2031-01-01" {
		t.Fatal("Day is not the UTC day")
	}
}

// Time-to-upgrade buckets are half a power of two wide; the median read
// from them is within a factor √2 of the exact median.
func TestTTUBucketsAndMedian(t *testing.T) {
	for _, d := range []time.Duration{0, time.Second, 3 * time.Second, time.Minute, 90 * time.Second, time.Hour, 26 * time.Hour, 40 * 24 * time.Hour} {
		i := storage.TTUBucket(d)
		lo, hi := storage.TTUBucketBounds(i)
		if d < lo || d >= hi {
			t.Errorf("%v: bucket %d is [%v, %v)", d, i, lo, hi)
		}
		if i > 1 && float64(hi)/float64(lo) > 1.4143 {
			t.Errorf("bucket %d is [%v, %v): wider than √2", i, lo, hi)
		}
	}
	if storage.TTUBucket(100*365*24*time.Hour) != storage.TTUBuckets-1 {
		t.Error("a very slow upgrade is not in the last bucket")
	}
	hist := make([]int64, storage.TTUBuckets)
	if _, ok := storage.TTUMedian(hist); ok {
		t.Fatal("a median of nothing")
	}
	// 3 upgrades after a minute, 2 after a day: the median is a minute.
	hist[storage.TTUBucket(time.Minute)] += 3
	hist[storage.TTUBucket(24*time.Hour)] += 2
	m, ok := storage.TTUMedian(hist)
	if !ok || float64(m) < float64(time.Minute)/1.4143 || float64(m) > float64(time.Minute)*1.4143 {
		t.Fatalf("median %v, want about a minute", m)
	}
}

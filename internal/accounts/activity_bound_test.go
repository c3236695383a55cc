package accounts

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"
)

// touchRecorder is an ActivityStore that hands each flushed batch over.
type touchRecorder struct{ batches chan map[string]time.Time }

func (r *touchRecorder) TouchUsers(_ context.Context, at map[string]time.Time) (int, error) {
	r.batches <- at
	return len(at), nil
}

// TestActivityFlushesEarlyWhenFull: the pending map is bounded; reaching
// maxPending distinct users makes Run flush at once rather than at its
// (here hour-long) interval, and only then.
func TestActivityFlushesEarlyWhenFull(t *testing.T) {
	t.Parallel()
	rec := &touchRecorder{batches: make(chan map[string]time.Time, 4)}
	a := NewActivity(rec)
	at := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range maxPending - 1 {
		a.Touch(fmt.Sprint("u", i), at)
	}
	a.Touch("u0", at.Add(time.Second)) // a repeat does not grow the map
	if len(a.full) != 0 {
		t.Fatalf("an early flush was asked for below the bound (%d pending)", maxPending-1)
	}

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.Run(ctx, time.Hour, func(err error) { t.Error(err) })
	}()
	a.Touch("last", at) // the bound
	// The early flush writes everything pending, in chunks.
	got := map[string]time.Time{}
	for len(got) < maxPending {
		select {
		case b := <-rec.batches:
			maps.Copy(got, b)
		case <-time.After(time.Minute): // a hang guard: the interval is an hour
			t.Fatalf("no early flush when the activity map reached its bound (%d of %d written)", len(got), maxPending)
		}
	}
	if len(got) != maxPending || !got["u0"].Equal(at.Add(time.Second)) || !got["last"].Equal(at) {
		t.Fatalf("early flush of %d users (u0 at %v), want %d", len(got), got["u0"], maxPending)
	}
	stop()
	<-done
	select {
	case b := <-rec.batches:
		t.Fatalf("a flush of %d users after everything was written", len(b))
	default:
	}
	if a.pending == nil || len(a.pending) != 0 {
		t.Fatalf("%d users still pending", len(a.pending))
	}
}

package outbox

import (
	"cmp"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/guestauth/caddy-guestauth/internal/events"
)

// coalescer folds noisy events per key (type, user, client and client IP):
// the first event of a quiet spell is sent at once, and those that follow
// within interval are only counted, then sent as one summary event when the
// interval ends. While they keep coming, one summary goes out per interval.
type coalescer struct {
	interval time.Duration
	maxKeys  int

	mu      sync.Mutex
	windows map[string]*window
}

// window is one key's current interval.
type window struct {
	end   time.Time
	count int          // occurrences not yet sent
	since time.Time    // time of the first of them
	last  events.Event // the latest of them
}

func newCoalescer(interval time.Duration, maxKeys int) *coalescer {
	return &coalescer{interval: interval, maxKeys: maxKeys, windows: make(map[string]*window)}
}

func coalesceKey(ev events.Event) string {
	ip, _ := ev.Data["client_ip"].(string)
	return ev.Type + "\x00" + ev.UserID + "\x00" + ev.ClientID + "\x00" + ip
}

// add records ev as happening at now, and returns the events to send now:
// the summary of the key's interval if it has ended, then ev itself (with
// leads set) when it starts a burst. ok is false, and ev is not recorded,
// when ev's key is new and maxKeys keys are already being tracked.
func (c *coalescer) add(ev events.Event, now time.Time) (send []events.Event, leads, ok bool) {
	k := coalesceKey(ev)
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.windows[k]
	if w != nil && !now.Before(w.end) {
		if w.count > 0 {
			// Still busy: the summary goes, and a new interval starts.
			send = append(send, w.summary())
			w.count, w.end = 0, now.Add(c.interval)
		} else {
			delete(c.windows, k)
			w = nil
		}
	}
	if w == nil {
		if len(c.windows) >= c.maxKeys {
			return send, false, false
		}
		c.windows[k] = &window{end: now.Add(c.interval)}
		ev.Data = maps.Clone(ev.Data)
		if ev.Data == nil {
			ev.Data = make(map[string]any, 1)
		}
		ev.Data[events.DataCount] = 1
		return append(send, ev), true, true
	}
	if w.count == 0 {
		w.since = ev.Time
	}
	w.count++
	w.last = ev
	return send, false, true
}

// flush returns the summaries of the intervals ended by now, or of all of
// them when all is set, oldest first, and forgets keys that went quiet.
func (c *coalescer) flush(now time.Time, all bool) []events.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	var send []events.Event
	for k, w := range c.windows {
		if !all && now.Before(w.end) {
			continue
		}
		if w.count == 0 || all {
			delete(c.windows, k)
		}
		if w.count > 0 {
			send = append(send, w.summary())
			w.count, w.end = 0, now.Add(c.interval)
		}
	}
	slices.SortFunc(send, func(a, b events.Event) int { return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.ID, b.ID)) })
	return send
}

// summary is one event standing for the window's pending occurrences.
func (w *window) summary() events.Event {
	ev := w.last
	ev.ID = uuid.NewString()
	ev.Data = maps.Clone(ev.Data)
	if ev.Data == nil {
		ev.Data = make(map[string]any, 2)
	}
	ev.Data[events.DataCount] = w.count
	ev.Data[events.DataSince] = w.since.UTC()
	return ev
}

package accounts

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// GuestLimits bound guest creation. A refused creation writes nothing.
type GuestLimits struct {
	// PerIP is a token bucket per client IP; Global one for the whole site.
	PerIP  Limit
	Global Limit
	// MaxLive caps how many guests may exist at once (0: no cap). The count
	// is read before creating, so concurrent creations may pass it by at
	// most their number.
	MaxLive int64
}

// capRetry is the Retry-After given when the guest cap is reached: the cap
// frees up only as guests upgrade or expire.
const capRetry = time.Hour

// admitGuest applies the creation limits for a request from clientIP.
func (s *Service) admitGuest(ctx context.Context, clientIP string) error {
	if s.cfg.Guests.MaxLive > 0 {
		live, _, err := s.store.GuestCounts(ctx)
		if err != nil {
			return err
		}
		if live >= s.cfg.Guests.MaxLive {
			return s.throttled(LimitCap, capRetry)
		}
	}
	if wait := s.byIPCreate.Take(clientIP); wait > 0 {
		return s.throttled(LimitIP, wait)
	}
	wait := s.global.Take("")
	if s.globalShared != nil {
		var err error
		if wait, err = s.globalShared.Take(ctx, "", s.now()); err != nil {
			return err
		}
	}
	if wait > 0 {
		return s.throttled(LimitGlobal, wait)
	}
	return nil
}

// Activity coalesces users' last-activity times in memory and writes them in
// one transaction per flush, so a proxied request never costs a store
// write. Recorded times are therefore at most one flush interval old.
type Activity struct {
	store   ActivityStore
	mu      sync.Mutex
	pending map[string]time.Time
	full    chan struct{}
}

// maxPending forces an early flush, bounding the memory Activity holds.
const maxPending = 50_000

// NewActivity makes a tracker writing to st.
func NewActivity(st ActivityStore) *Activity {
	return &Activity{store: st, pending: map[string]time.Time{}, full: make(chan struct{}, 1)}
}

// Touch records that userID was active at at.
func (a *Activity) Touch(userID string, at time.Time) {
	if a == nil {
		return
	}
	a.mu.Lock()
	if at.After(a.pending[userID]) {
		a.pending[userID] = at
	}
	n := len(a.pending)
	a.mu.Unlock()
	if n >= maxPending {
		select {
		case a.full <- struct{}{}:
		default:
		}
	}
}

// pendingAt is the activity of userID recorded since the last flush (zero
// if none, or if a is nil).
func (a *Activity) pendingAt(userID string) time.Time {
	if a == nil {
		return time.Time{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pending[userID]
}

// flushChunk bounds the users one store write of Flush touches. One
// transaction for a whole interval's activity (tens of thousands of users
// on a busy site) would hold the store's single writer for long, delaying
// every guest creation meanwhile, and free thousands of pages at once.
const flushChunk = 1000

// Flush writes what was recorded since the last flush, in writes of at most
// flushChunk users, in id order (close ids share pages).
func (a *Activity) Flush(ctx context.Context) error {
	a.mu.Lock()
	pending := a.pending
	a.pending = map[string]time.Time{}
	a.mu.Unlock()
	if len(pending) == 0 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(pending))
	for len(ids) > 0 {
		n := min(flushChunk, len(ids))
		chunk := make(map[string]time.Time, n)
		for _, id := range ids[:n] {
			chunk[id] = pending[id]
		}
		if _, err := a.store.TouchUsers(ctx, chunk); err != nil {
			// Keep this chunk and the rest for the next flush.
			a.mu.Lock()
			for _, id := range ids {
				if t := pending[id]; t.After(a.pending[id]) {
					a.pending[id] = t
				}
			}
			a.mu.Unlock()
			return err
		}
		ids = ids[n:]
	}
	return nil
}

// Run flushes every interval, and early when the buffer is full, until ctx
// is done; then it flushes once more and returns. onErr sees flush errors.
// The last flush runs with ctx's values but not its cancellation, so a
// shutdown loses no activity.
func (a *Activity) Run(ctx context.Context, interval time.Duration, onErr func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := a.Flush(context.WithoutCancel(ctx)); err != nil {
				onErr(err)
			}
			return
		case <-t.C:
		case <-a.full:
		}
		if err := a.Flush(ctx); err != nil && ctx.Err() == nil { // else the last flush retries
			onErr(err)
		}
	}
}

// PruneOptions configure Prune.
type PruneOptions struct {
	// IdleTTL: guests with no activity for this long are deleted.
	IdleTTL time.Duration
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// Batch is how many guests one write transaction deletes.
	Batch int
	// MaxListed bounds the users listed in the report (all are counted).
	MaxListed int
	// Observer, when set, is told guest.expired for each deleted guest
	// (data: reason, name).
	Observer Observer
	// Stager, when set with Observer, has the guest.expired events stored
	// in the outbox in the transaction that deletes the guests.
	Stager Stager
	// Activity, in a dry run, is activity recorded but not yet written,
	// judged as if written: a dry run writes nothing, not even a flush.
	// (Before a real run, flush first.)
	Activity *Activity
}

// Pruned is one guest deleted (or, in a dry run, that would be).
type Pruned struct {
	UserID   string    `json:"user_id"`
	Name     string    `json:"name"`
	Reason   string    `json:"reason"` // "idle" or "orphaned"
	ActiveAt time.Time `json:"last_active_at"`
}

// PruneReport is Prune's result.
type PruneReport struct {
	DryRun bool     `json:"dry_run"`
	Count  int      `json:"count"`
	Users  []Pruned `json:"users"`
}

// Prune reasons.
const (
	PruneIdle   = "idle"
	PruneOrphan = "orphaned"
)

// Prunable is the guest expiry rule, and the only place it is written: an
// ephemeral user (a guest, or a normal user without a password; see
// model.User.Ephemeral) that is not kept expires when it has been idle
// since before cutoff
// (zero: idle expiry is off), or when it is orphaned — its last session
// ended and it has no device key, so nobody can ever sign in as it again.
// It returns the reason.
func Prunable(u *model.User, cutoff time.Time) (reason string, ok bool) {
	switch {
	case !u.Ephemeral() || u.Kept:
		return "", false
	case !cutoff.IsZero() && u.ActiveAt().Before(cutoff):
		return PruneIdle, true
	case !u.OrphanedAt.IsZero() && u.DeviceKID == "":
		return PruneOrphan, true
	}
	return "", false
}

// scanPrunable calls fn for each guest Prunable at cutoff, from the store's
// index queries: idle ones first (oldest first), then orphaned ones. fn
// returns false to stop.
func scanPrunable(ctx context.Context, st PruneStore, cutoff time.Time, fn func(u *model.User, reason string) bool) error {
	seen := map[string]bool{}
	stopped := false
	visit := func(u *model.User) bool {
		if seen[u.ID] {
			return true
		}
		seen[u.ID] = true
		reason, ok := Prunable(u, cutoff)
		if ok && !fn(u, reason) {
			stopped = true
			return false
		}
		return true
	}
	if !cutoff.IsZero() {
		if err := st.ScanIdleGuests(ctx, cutoff, visit); err != nil || stopped {
			return err
		}
	}
	return st.ScanOrphans(ctx, visit)
}

// Prune deletes guests that are idle longer than opt.IdleTTL, and orphaned
// guests, except kept ones (see Prunable), with their sessions and index
// entries, in transactions of opt.Batch guests. Each guest is re-checked
// inside its transaction, so one that became active, kept or upgraded
// meanwhile survives. onDelete is called for each deleted guest.
func Prune(ctx context.Context, st PruneStore, now time.Time, opt PruneOptions, onDelete func(Pruned)) (*PruneReport, error) {
	if opt.Batch <= 0 {
		opt.Batch = 100
	}
	cutoff := now.Add(-opt.IdleTTL)
	if opt.IdleTTL <= 0 {
		cutoff = time.Time{} // idle expiry off: orphans only
	}
	rep := &PruneReport{DryRun: opt.DryRun, Users: []Pruned{}}
	record := func(p Pruned) {
		rep.Count++
		if len(rep.Users) < opt.MaxListed {
			rep.Users = append(rep.Users, p)
		}
	}
	if opt.DryRun {
		err := scanPrunable(ctx, st, cutoff, func(u *model.User, reason string) bool {
			if t := opt.Activity.pendingAt(u.ID); t.After(u.LastActiveAt) {
				v := *u
				v.LastActiveAt = t
				var ok bool
				if reason, ok = Prunable(&v, cutoff); !ok {
					return true
				}
				u = &v
			}
			record(Pruned{UserID: u.ID, Name: u.Name, Reason: reason, ActiveAt: u.ActiveAt()})
			return true
		})
		return rep, err
	}
	still := func(u *model.User) bool {
		_, ok := Prunable(u, cutoff)
		return ok
	}
	tried := map[string]bool{}
	for {
		var ids []string
		reasons := map[string]string{}
		err := scanPrunable(ctx, st, cutoff, func(u *model.User, reason string) bool {
			if !tried[u.ID] {
				tried[u.ID] = true
				ids = append(ids, u.ID)
				reasons[u.ID] = reason
			}
			return len(ids) < opt.Batch
		})
		if err != nil || len(ids) == 0 {
			return rep, err
		}
		expired := func(r storage.TxResult) []events.Event {
			evs := make([]events.Event, 0, len(r.Deleted))
			for _, u := range r.Deleted {
				evs = append(evs, events.Event{Type: events.GuestExpired, UserID: u.ID, Data: map[string]any{"reason": reasons[u.ID], "name": u.Name}})
			}
			return evs
		}
		var stage Stager
		if opt.Observer != nil {
			stage = opt.Stager
		}
		pend := withEvents(stage, func() time.Time { return now }, expired)
		deleted, err := st.DeleteUsersIf(ctx, ids, still, pend.tx())
		if err != nil {
			return rep, err
		}
		out := pend.stored(storage.TxResult{Deleted: deleted})
		for i, u := range deleted {
			p := Pruned{UserID: u.ID, Name: u.Name, Reason: reasons[u.ID], ActiveAt: u.ActiveAt()}
			record(p)
			if opt.Observer != nil && i < len(out.evs) {
				opt.Observer(ctx, out.evs[i], out.stored)
			}
			if onDelete != nil {
				onDelete(p)
			}
		}
	}
}

package accounts

import (
	"context"
	"strconv"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Stager turns the events a write reports into outbox records: given to a
// Service (Config.Stager) and to Prune, it has those events stored in the
// write's own transaction (storage.Events), so an acknowledged write never
// loses its event. It prepares each event (fills its id and time; see
// events.Prepare) and returns the prepared events with the records.
type Stager func(evs []events.Event) ([]events.Event, []storage.OutboxRecord, error)

// pending is the events of one write: build makes them from what the
// write did. With a Stager, the write stores them (tx); without, they are
// built after it.
type pending struct {
	stage Stager
	build func(r storage.TxResult) []events.Event
	// now is the clock the write's daily counts are dated by.
	now func() time.Time
	// born are the creation times of the users upgraded by the write
	// (bornAt), for the cohort and time-to-upgrade counts.
	born map[string]time.Time
	// staged are the prepared events of tx's last call: those the write
	// stored, if it succeeded (storage.Events).
	staged []events.Event
}

// withEvents returns the pending events of one write, built by build,
// whose daily counts are dated by now.
func withEvents(stage Stager, now func() time.Time, build func(r storage.TxResult) []events.Event) *pending {
	return &pending{stage: stage, build: build, now: now}
}

// withEvents is withEvents with the Service's Stager and clock.
func (s *Service) withEvents(build func(r storage.TxResult) []events.Event) *pending {
	return withEvents(s.cfg.Stager, s.now, build)
}

// bornAt notes the creation time of u, a user the write upgrades: its
// guest.upgraded is counted on that day's cohort too (called from the
// write's update function, with the stored record).
func (p *pending) bornAt(u *model.User) {
	if p.born == nil {
		p.born = map[string]time.Time{}
	}
	p.born[u.ID] = u.CreatedAt
}

// tx is the storage.Events to give the write: it stores the events in the
// outbox (with a Stager) and adds their daily counts (always).
func (p *pending) tx() storage.Events {
	return func(r storage.TxResult) ([]storage.OutboxRecord, error) {
		p.staged = nil
		evs := p.build(r)
		if len(evs) == 0 {
			return nil, nil
		}
		now := time.Now
		if p.now != nil {
			now = p.now
		}
		TallyEvents(r.Tally, now(), evs, p.born)
		if p.stage == nil {
			return nil, nil
		}
		prepared, recs, err := p.stage(evs)
		if err != nil {
			return nil, err
		}
		p.staged = prepared
		return recs, nil
	}
}

// outcomes are the events of one write, to report.
type outcomes struct {
	evs    []events.Event
	stored bool // stored with the write, under their ids
}

// stored are the events of a write that succeeded (returned nil): with a
// Stager, those it stored, with the ids they were stored under; without,
// built now from r.
func (p *pending) stored(r storage.TxResult) outcomes {
	if p.stage == nil {
		return outcomes{evs: p.build(r)}
	}
	return outcomes{evs: p.staged, stored: true}
}

// reported are the events of a write that may have stored them: stored
// when it did (the write succeeded); built now from r when it did not (a
// session already gone, a write that failed but is reported all the same),
// for the observer's sink to store right after.
func (p *pending) reported(wrote bool, r storage.TxResult) outcomes {
	if wrote {
		return p.stored(r)
	}
	return outcomes{evs: p.build(r)}
}

// observeAll reports the outcomes of writes.
func (s *Service) observeAll(ctx context.Context, writes ...outcomes) {
	if s.cfg.Observer == nil {
		return
	}
	for _, w := range writes {
		for _, ev := range w.evs {
			s.cfg.Observer(ctx, ev, w.stored)
		}
	}
}

// created is a build function for an event about the user the write
// creates: ev with that user's id.
func created(ev events.Event) func(storage.TxResult) []events.Event {
	return func(r storage.TxResult) []events.Event {
		if len(r.Created) == 0 {
			return nil
		}
		ev.UserID = r.Created[0].ID
		return []events.Event{ev}
	}
}

// one is a build function for an event known before the write.
func one(ev events.Event) func(storage.TxResult) []events.Event {
	return func(storage.TxResult) []events.Event { return []events.Event{ev} }
}

// Upgrade methods, the data.method of guest.upgraded: how the guest became
// a member.
const (
	// MethodPassword: a username and password (sign-up, update-user, the
	// manage API), a name-only upgrade through those paths included.
	MethodPassword = "password"
	// MethodProvider: a sign-in provider linked.
	MethodProvider = "provider"
	// MethodPasskey: a passkey saved.
	MethodPasskey = "passkey"
	// MethodEmail: a password set from an emailed link.
	MethodEmail = "email"
)

// TallyEvents adds the daily counts evs stand for to t, on the UTC day of
// now: guest.created, guest.upgraded (by data.method, and on the cohort
// of the guest's creation day with its time to upgrade when born knows
// it), guest.merged, guest.expired and user.deleted.
func TallyEvents(t *storage.Tally, now time.Time, evs []events.Event, born map[string]time.Time) {
	if t == nil {
		return
	}
	for _, ev := range evs {
		switch ev.Type {
		case events.GuestCreated:
			t.Add(now, storage.SeriesGuestsCreated, 1)
		case events.GuestUpgraded:
			method, _ := ev.Data["method"].(string)
			if method == "" {
				method = "other"
			}
			t.Add(now, storage.SeriesUpgraded+method, 1)
			if b, ok := born[ev.UserID]; ok && !b.IsZero() {
				t.Add(b, storage.SeriesCohortUpgraded, 1)
				t.Add(now, storage.SeriesTimeToUpgrade+strconv.Itoa(storage.TTUBucket(now.Sub(b))), 1)
			}
		case events.GuestMerged:
			t.Add(now, storage.SeriesMerged, 1)
		case events.GuestExpired:
			t.Add(now, storage.SeriesExpired, 1)
		case events.UserDeleted:
			t.Add(now, storage.SeriesDeleted, 1)
		}
	}
}

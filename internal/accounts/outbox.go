package accounts

import (
	"context"

	"github.com/guestauth/caddy-guestauth/internal/events"
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
	// staged are the prepared events of tx's last call: those the write
	// stored, if it succeeded (storage.Events).
	staged []events.Event
}

// withEvents returns the pending events of one write, built by build.
func withEvents(stage Stager, build func(r storage.TxResult) []events.Event) *pending {
	return &pending{stage: stage, build: build}
}

// tx is the storage.Events to give the write: nil without a Stager.
func (p *pending) tx() storage.Events {
	if p.stage == nil {
		return nil
	}
	return func(r storage.TxResult) ([]storage.OutboxRecord, error) {
		p.staged = nil
		evs := p.build(r)
		if len(evs) == 0 {
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

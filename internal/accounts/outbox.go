package accounts

import (
	"context"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Stager turns the events a write reports into outbox records (see
// storage.WithTxEvents): given to a Service (Config.Stager) and to Prune
// when the store keeps a webhook outbox, it makes those events stored in
// the write's own transaction, so an acknowledged write never loses its
// event. It prepares each event (fills its id and time; see
// events.Prepare) and returns the prepared events with the records.
type Stager func(evs []events.Event) ([]events.Event, []storage.OutboxRecord, error)

// pending is the events of one write, built inside its transaction when
// the store can store them there.
type pending struct {
	te    *storage.TxEvents
	build func(r storage.TxResult) []events.Event
	evs   []events.Event // as stored, when te.Stored()
}

// withEvents returns ctx for the write whose events build returns, given
// what the write did. Use the returned context for that write only (the
// first write made with it stores them), then report p.events.
func withEvents(ctx context.Context, stage Stager, build func(r storage.TxResult) []events.Event) (context.Context, *pending) {
	p := &pending{build: build}
	if stage == nil {
		return ctx, p
	}
	p.te = &storage.TxEvents{Build: func(r storage.TxResult) ([]storage.OutboxRecord, error) {
		evs := build(r)
		if len(evs) == 0 {
			p.evs = nil
			return nil, nil
		}
		prepared, recs, err := stage(evs)
		if err != nil {
			return nil, err
		}
		p.evs = prepared
		return recs, nil
	}}
	return storage.WithTxEvents(ctx, p.te), p
}

// outcomes are the events of one write, to report.
type outcomes struct {
	evs    []events.Event
	stored bool // stored with the write, under their ids
}

// events are the write's events to report, given what it did: those
// stored with it (with the ids they were stored under), or, when the store
// did not store them, built now.
func (p *pending) events(r storage.TxResult) outcomes {
	if p.te != nil && p.te.Stored() {
		return outcomes{evs: p.evs, stored: true}
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

package storage

import (
	"context"
	"errors"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// OutboxRecord is one webhook delivery kept in the store (the outbox), so
// that an event survives the process that produced it: any process using
// the store with the same webhook delivers it, the one that wrote it after
// a restart included.
type OutboxRecord struct {
	// ID is the event id, fixed when the record is written: every attempt,
	// by any process, sends it.
	ID   string
	Type string
	// Target names the webhook (a hash of its URL; never its secret): a
	// process delivers only the records of the webhook it is configured
	// with.
	Target string
	// Body is the event's JSON, sent as is on every attempt.
	Body []byte
	// Noisy records (coalesced summaries) are delivered after the others.
	Noisy     bool
	CreatedAt time.Time
	// Attempts is how many times the record was claimed, this claim
	// included (set by OutboxClaim).
	Attempts int
}

// Check refuses a record that cannot be stored: it needs an id, a type and
// a target. Backends check every record they store.
func (r *OutboxRecord) Check() error {
	if r.ID == "" || r.Type == "" || r.Target == "" {
		return errors.New("an outbox record needs an id, a type and a target")
	}
	return nil
}

// Outbox is the part of Backend that keeps webhook deliveries, which every
// process using the store may claim. Times are the callers' clocks: a
// lease assumes the processes' clocks roughly agree, and a skew only makes
// a record delivered twice (receivers de-duplicate on its id) or later,
// never lost.
type Outbox interface {
	// OutboxPut stores records (ids already stored are skipped), due at
	// once.
	OutboxPut(ctx context.Context, recs []OutboxRecord) error
	// OutboxClaim leases up to limit of target's records due at now (their
	// retry time reached and no lease held), lifecycle records before noisy
	// ones and oldest first, until now+lease: until then no other call
	// returns them. Records other calls are claiming are skipped, not
	// waited for.
	OutboxClaim(ctx context.Context, target string, now time.Time, lease time.Duration, limit int) ([]OutboxRecord, error)
	// OutboxDelete deletes a record (delivered, or given up). Deleting an
	// unknown id is not an error.
	OutboxDelete(ctx context.Context, id string) error
	// OutboxRetry releases a record's lease and makes it due again at at.
	OutboxRetry(ctx context.Context, id string, at time.Time) error
	// OutboxLen is how many records target has, due, leased or waiting
	// for a retry: the events not delivered yet.
	OutboxLen(ctx context.Context, target string) (int, error)
	// OutboxTrim deletes target's records created before before, then its
	// oldest records beyond maxRows (maxRows <= 0: no bound), and returns
	// the type of each record it deleted.
	OutboxTrim(ctx context.Context, target string, before time.Time, maxRows int) ([]string, error)
}

// TxResult is what a write did, as far as the events it reports depend on
// it.
type TxResult struct {
	// Created are the users the write created (CreateUser).
	Created []model.User
	// Deleted are the users the write deleted (DeleteUser, DeleteUsersIf).
	Deleted []model.User
	// Ended is how many sessions the write deleted outright (not counting
	// those of deleted users).
	Ended int
	// Tally is where Events adds the daily counts its events stand for
	// (see DayCount); the backend adds them to its daily counters in the
	// same transaction. Each call of Events gets an empty one.
	Tally *Tally
}

// Events are the outbox records of the events a write reports, built from
// what the write did. It is the last argument of the Backend writes that
// report events; nil means the write reports none.
//
// A write given Events calls it inside its own transaction, after its own
// changes, with its TxResult, and stores the records it returns (if any)
// in the outbox in that same transaction. So the records are stored if and
// only if the write commits: a write that returns nil stored them, one
// that returns an error stored nothing. An error from Events, or records
// that cannot be stored (see OutboxRecord.Check, or an outbox the store
// refuses to write), fail the write with that error, and it changes
// nothing. A write that fails before its own changes (ErrNotFound, say)
// does not call Events.
//
// A backend may run a transaction more than once (bbolt runs a shared
// commit again without a write whose function failed), calling Events
// each time: the records of the last call are those stored, so Events must
// have no effect but its result (it may remember that result).
type Events func(r TxResult) ([]OutboxRecord, error)

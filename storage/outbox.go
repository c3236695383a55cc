package storage

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// OutboxRecord is one webhook delivery kept in a store shared by several
// processes (an outbox), so that an event survives the process that
// produced it: any process configured with the same webhook delivers it.
type OutboxRecord struct {
	// ID is the event id, fixed when the row is written: every attempt,
	// by any process, sends it as X-Guest-Auth-Delivery.
	ID   string
	Type string
	// Target names the webhook (a hash of its URL; never its secret): a
	// process delivers only the rows of the webhook it is configured with.
	Target string
	// Body is the event's JSON, sent as is on every attempt.
	Body []byte
	// Noisy rows (coalesced summaries) are delivered after the others.
	Noisy     bool
	CreatedAt time.Time
	// Attempts is how many times the row was claimed, this claim included
	// (set by OutboxClaim).
	Attempts int
}

// Outbox is an optional Backend capability: a table of webhook deliveries
// that every process sharing the store can claim.
type Outbox interface {
	// OutboxPut stores records (ids already stored are skipped).
	OutboxPut(ctx context.Context, recs []OutboxRecord) error
	// OutboxClaim leases up to limit of target's rows due at now (their
	// retry time reached and no lease held), lifecycle rows before noisy
	// ones and oldest first, until now+lease: until then no other call
	// returns them. Rows other transactions are claiming are skipped, not
	// waited for.
	OutboxClaim(ctx context.Context, target string, now time.Time, lease time.Duration, limit int) ([]OutboxRecord, error)
	// OutboxDelete deletes a row (delivered, or given up).
	OutboxDelete(ctx context.Context, id string) error
	// OutboxRetry releases a row's lease and makes it due again at at.
	OutboxRetry(ctx context.Context, id string, at time.Time) error
	// OutboxTrim deletes target's rows created before before, then its
	// oldest rows beyond maxRows (maxRows <= 0: no bound), and returns the
	// type of each row it deleted.
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
}

// TxEvents carries, in a write's context, the outbox records the write
// reports (see WithTxEvents).
type TxEvents struct {
	// Build returns the records to store with the write, given what it
	// did; an error fails the write.
	Build  func(r TxResult) ([]OutboxRecord, error)
	stored atomic.Bool
}

// Stored reports whether a write stored the records Build returned and
// committed.
func (t *TxEvents) Stored() bool { return t.stored.Load() }

// MarkStored is called by a backend once the transaction that stored the
// records committed; later writes with the same context leave them alone.
func (t *TxEvents) MarkStored() { t.stored.Store(true) }

type txEventsKey struct{}

// WithTxEvents returns ctx carrying te. A backend that implements Outbox
// runs te.Build inside the transaction of the first write made with the
// returned context (after the write's own statements) and stores the
// records in it, so the events are stored if and only if the write is; a
// failure to store them fails the write. Other backends ignore it (the
// caller then sends the events itself).
func WithTxEvents(ctx context.Context, te *TxEvents) context.Context {
	return context.WithValue(ctx, txEventsKey{}, te)
}

// TxEventsFrom returns the TxEvents of ctx not yet stored, or nil.
func TxEventsFrom(ctx context.Context) *TxEvents {
	te, _ := ctx.Value(txEventsKey{}).(*TxEvents)
	if te == nil || te.Build == nil || te.Stored() {
		return nil
	}
	return te
}

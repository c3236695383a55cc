package postgres

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/guestauth/caddy-guestauth/storage"
)

// The webhook outbox (migration 0004). Rows are written in the
// transaction of the write whose events they are (see storeEvents), or
// right after for events with no write; nodes claim due rows with a lease
// (FOR UPDATE SKIP LOCKED, so claimers never wait for each other nor get
// the same row), and delete them once delivered. Times are the callers'
// clocks, in unix ns: leases assume the nodes' clocks roughly agree, and
// a skew only makes a row delivered twice (receivers deduplicate on the
// event id) or later, never lost.

const insertOutbox = `INSERT INTO guestauth_outbox (id, target, type, body, noisy, created_ns, next_ns)
	VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO NOTHING`

// putOutbox inserts recs with q (a transaction or the pool): one statement
// for one record, a batch for more.
func putOutbox(ctx context.Context, q interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
}, recs []storage.OutboxRecord) error {
	for i := range recs {
		if err := recs[i].Check(); err != nil {
			return invalid(err.Error())
		}
	}
	if len(recs) == 1 {
		r := recs[0]
		_, err := q.Exec(ctx, insertOutbox, r.ID, r.Target, r.Type, r.Body, r.Noisy, ns(r.CreatedAt))
		return err
	}
	b := &pgx.Batch{}
	for _, r := range recs {
		b.Queue(insertOutbox, r.ID, r.Target, r.Type, r.Body, r.Noisy, ns(r.CreatedAt))
	}
	return q.SendBatch(ctx, b).Close()
}

// storeEvents builds the write's events (w.ev) from what it did and queues
// their rows, sent with COMMIT (see storage.Events).
func (w *wtx) storeEvents() error {
	if w.ev == nil {
		return nil
	}
	tally := &storage.Tally{}
	recs, err := w.ev(storage.TxResult{Created: w.created, Deleted: w.deleted, Ended: w.ended, Tally: tally})
	if err != nil {
		return userError{err}
	}
	w.daily = tally.Counts()
	for _, c := range w.daily {
		if err := storage.CheckDayCount(c); err != nil {
			return invalid(err.Error())
		}
	}
	for i := range recs {
		r := &recs[i]
		if err := r.Check(); err != nil {
			return invalid(err.Error())
		}
		w.queue(insertOutbox, r.ID, r.Target, r.Type, r.Body, r.Noisy, ns(r.CreatedAt))
	}
	return nil
}

// OutboxPut implements storage.Backend.
func (p *Postgres) OutboxPut(ctx context.Context, recs []storage.OutboxRecord) error {
	if len(recs) == 0 {
		return storage.CtxErr(ctx)
	}
	return p.once(ctx, func(ctx context.Context) error {
		return putOutbox(ctx, p.pool, recs)
	})
}

// OutboxClaim implements storage.Backend, in one statement.
func (p *Postgres) OutboxClaim(ctx context.Context, target string, now time.Time, lease time.Duration, limit int) ([]storage.OutboxRecord, error) {
	var out []storage.OutboxRecord
	err := p.once(ctx, func(ctx context.Context) error {
		out = nil
		rows, err := p.pool.Query(ctx, `UPDATE guestauth_outbox o SET lease_ns = $3, attempts = o.attempts + 1
			FROM (SELECT id FROM guestauth_outbox WHERE target = $1 AND next_ns <= $2 AND lease_ns <= $2
				ORDER BY noisy, created_ns, id LIMIT $4 FOR UPDATE SKIP LOCKED) d
			WHERE o.id = d.id
			RETURNING o.id, o.type, o.body, o.noisy, o.created_ns, o.attempts`,
			target, ns(now), ns(now.Add(lease)), max(limit, 1))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r := storage.OutboxRecord{Target: target}
			var created int64
			if err := rows.Scan(&r.ID, &r.Type, &r.Body, &r.Noisy, &created, &r.Attempts); err != nil {
				return err
			}
			r.CreatedAt = time.Unix(0, created).UTC()
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	// RETURNING does not keep the subquery's order.
	sortOutbox(out)
	return out, nil
}

// OutboxDelete implements storage.Backend.
func (p *Postgres) OutboxDelete(ctx context.Context, id string) error {
	return p.once(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, `DELETE FROM guestauth_outbox WHERE id = $1`, id)
		return err
	})
}

// OutboxRetry implements storage.Backend.
func (p *Postgres) OutboxRetry(ctx context.Context, id string, at time.Time) error {
	return p.once(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, `UPDATE guestauth_outbox SET next_ns = $2, lease_ns = 0 WHERE id = $1`, id, ns(at))
		return err
	})
}

// OutboxLen implements storage.Backend.
func (p *Postgres) OutboxLen(ctx context.Context, target string) (int, error) {
	var n int
	err := p.read(ctx, func(ctx context.Context) error {
		return p.pool.QueryRow(ctx, `SELECT count(*) FROM guestauth_outbox WHERE target = $1`, target).Scan(&n)
	})
	return n, err
}

// OutboxTrim implements storage.Backend.
func (p *Postgres) OutboxTrim(ctx context.Context, target string, before time.Time, maxRows int) ([]string, error) {
	var types []string
	err := p.once(ctx, func(ctx context.Context) error {
		types = nil
		rows, err := p.pool.Query(ctx, `DELETE FROM guestauth_outbox WHERE target = $1 AND (created_ns < $2 OR ($3 > 0 AND id IN (
				SELECT id FROM guestauth_outbox WHERE target = $1 ORDER BY created_ns DESC, id DESC OFFSET greatest($3, 0))))
			RETURNING type`, target, ns(before), maxRows)
		if err != nil {
			return err
		}
		types, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	return types, err
}

func sortOutbox(recs []storage.OutboxRecord) {
	slices.SortFunc(recs, func(a, b storage.OutboxRecord) int {
		if a.Noisy != b.Noisy {
			if a.Noisy {
				return 1
			}
			return -1
		}
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
}

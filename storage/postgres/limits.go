package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// takeLimit is GCRA in one statement. tat is the theoretical arrival time:
// a try at now is allowed when max(tat, now) + interval - now <= burst *
// interval, and then moves tat to max(tat, now) + interval. The row lock
// of INSERT ... ON CONFLICT DO UPDATE orders concurrent takes on every
// node, each seeing the tat the previous one wrote; a refused try updates
// nothing and returns no row.
//
// $1 name, $2 key, $3 now, $4 interval, $5 burst * interval (all ns).
const takeLimit = `INSERT INTO guestauth_limits AS l (name, key, tat_ns) VALUES ($1, $2, $3::bigint + $4::bigint)
	ON CONFLICT (name, key) DO UPDATE SET tat_ns = GREATEST(l.tat_ns, $3::bigint) + $4::bigint
	WHERE GREATEST(l.tat_ns, $3::bigint) + $4::bigint - $3::bigint <= $5::bigint
	RETURNING tat_ns`

// purgeLimits deletes a few rows whose bucket has refilled (a full bucket
// is the same as none) at least purgeAge ago, so rows do not pile up; each
// take runs it, and rows other transactions hold are skipped. The age
// spares a key in use (the global guest rate, below its limit, is full
// again between most takes) a delete and an insert at each take.
const purgeLimits = `DELETE FROM guestauth_limits WHERE (name, key) IN (SELECT name, key FROM guestauth_limits
	WHERE tat_ns <= $1 ORDER BY tat_ns LIMIT 16 FOR UPDATE SKIP LOCKED)`

const purgeAge = time.Minute

// LimitTake implements storage.Backend, in one round trip: the
// purge and the take go in one batch, one transaction, committed without
// waiting for its WAL to reach the disk (synchronous_commit off for it).
// The take is seen by every node at once all the same; a database crash
// may forget the last fraction of a second of takes, letting that many
// more through, which a rate limit can afford. The next durable commit of
// the server (a guest's creation) flushes it anyway. A refusal costs a
// second round trip, to read when the next try fits.
func (p *Postgres) LimitTake(ctx context.Context, name, key string, burst int, interval time.Duration, now time.Time) (time.Duration, error) {
	if burst <= 0 || interval <= 0 {
		return 0, invalid("a shared limit needs a burst and an interval")
	}
	var wait time.Duration
	err := p.once(ctx, func(ctx context.Context) error {
		wait = 0
		b := &pgx.Batch{}
		b.Queue(`SELECT set_config('synchronous_commit', 'off', true)`)
		b.Queue(purgeLimits, ns(now.Add(-purgeAge)))
		var tat int64
		var taken bool
		b.Queue(takeLimit, name, key, ns(now), int64(interval), int64(burst)*int64(interval)).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				taken = true
			}
			return rows.Err()
		})
		if err := p.pool.SendBatch(ctx, b).Close(); err != nil || taken {
			return err
		}
		// Refused: report when the next try fits. A concurrent take may
		// move tat meanwhile; the wait is advice, the refusal is not.
		err := p.pool.QueryRow(ctx, `SELECT tat_ns FROM guestauth_limits WHERE name = $1 AND key = $2`, name, key).Scan(&tat)
		if errors.Is(err, pgx.ErrNoRows) {
			wait = time.Nanosecond // deleted meanwhile: try again
			return nil
		}
		if err != nil {
			return err
		}
		wait = time.Duration(max(tat, ns(now)) + int64(interval) - ns(now) - int64(burst)*int64(interval))
		wait = max(wait, time.Nanosecond)
		return nil
	})
	return wait, err
}

// LimitRefund implements storage.Backend.
func (p *Postgres) LimitRefund(ctx context.Context, name, key string, interval time.Duration) error {
	return p.once(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, `UPDATE guestauth_limits SET tat_ns = tat_ns - $3 WHERE name = $1 AND key = $2`, name, key, int64(interval))
		return err
	})
}

// LimitReset implements storage.Backend.
func (p *Postgres) LimitReset(ctx context.Context, name, key string) error {
	return p.once(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, `DELETE FROM guestauth_limits WHERE name = $1 AND key = $2`, name, key)
		return err
	})
}

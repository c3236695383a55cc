package postgres

import (
	"cmp"
	"context"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// addDailySQL adds counts to one shard of guestauth_daily, in (day, series)
// order (the order of the arrays: storage.SortDayCounts), so concurrent
// writes lock the rows of a shard in one order.
const addDailySQL = `INSERT INTO guestauth_daily (day, series, shard, n)
	SELECT d::date, s, $1, n FROM unnest($2::text[], $3::text[], $4::bigint[]) AS t(d, s, n)
	ON CONFLICT (day, series, shard) DO UPDATE SET n = guestauth_daily.n + EXCLUDED.n`

func dailyCols(counts []storage.DayCount) (days, series []string, ns []int64) {
	c := append([]storage.DayCount(nil), counts...)
	storage.SortDayCounts(c)
	for _, x := range c {
		days = append(days, x.Day)
		series = append(series, x.Series)
		ns = append(ns, x.N)
	}
	return days, series, ns
}

// AddDaily implements storage.Backend, in one statement on a random shard.
func (p *Postgres) AddDaily(ctx context.Context, counts []storage.DayCount) error {
	for _, c := range counts {
		if err := storage.CheckDayCount(c); err != nil {
			return err
		}
	}
	if len(counts) == 0 {
		return storage.CtxErr(ctx)
	}
	days, series, ns := dailyCols(counts)
	return p.once(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, addDailySQL, 1+rand.IntN(guestShards-1), days, series, ns) //nolint:gosec // G404: a shard to spread writes over, not a secret
		return err
	})
}

// Daily implements storage.Backend: one range of the primary key, summed
// over the shards.
func (p *Postgres) Daily(ctx context.Context, from, to string) ([]storage.DayCount, error) {
	var out []storage.DayCount
	err := p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, `SELECT to_char(day, 'YYYY-MM-DD'), series, sum(n)::bigint FROM guestauth_daily
			WHERE day BETWEEN $1::date AND $2::date GROUP BY day, series HAVING sum(n) <> 0 ORDER BY day, series`, from, to)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (storage.DayCount, error) {
			var c storage.DayCount
			err := r.Scan(&c.Day, &c.Series, &c.N)
			return c, err
		})
		return err
	})
	return out, err
}

// CountIdleGuests implements storage.Backend: guestauth_idle_hours' hours
// before before's hour, and the idle index's users of that hour up to
// before, in one statement (one snapshot).
func (p *Postgres) CountIdleGuests(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	last := floorDiv(ns(before), int64(time.Hour))
	err := p.read(ctx, func(ctx context.Context) error {
		return p.pool.QueryRow(ctx, `SELECT
			(SELECT coalesce(sum(n), 0)::bigint FROM guestauth_idle_hours WHERE hour < $1) +
			(SELECT count(*) FROM guestauth_users WHERE idle_ns >= $2 AND idle_ns < $3)`,
			last, last*int64(time.Hour), ns(before)).Scan(&n)
	})
	return n, err
}

// ListUserSessions implements storage.Backend, from the sessions' user
// index.
func (p *Postgres) ListUserSessions(ctx context.Context, userID string) ([]model.Session, error) {
	var out []model.Session
	err := p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, `SELECT data FROM guestauth_sessions WHERE user_id = $1 ORDER BY created_ns, id`, userID)
		if err != nil {
			return err
		}
		raws, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil {
			return err
		}
		out = out[:0]
		for _, raw := range raws {
			var s model.Session
			if err := storage.DecodeRecord(raw, &s); err != nil {
				return invalid("decoding a record: " + err.Error())
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// idleHour is the UTC hour (unix hours) of u's idle-index entry, or nil
// when u (nil: none) is not in the index.
func idleHour(u *model.User) *int64 {
	if u == nil {
		return nil
	}
	idle, _ := userCols(u)
	if idle == nil {
		return nil
	}
	h := floorDiv(*idle, int64(time.Hour))
	return &h
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// flushIdleHours queues the transaction's idle-hour changes, in (hour,
// shard) order (the lock order), and the deletion of the rows they empty.
func (w *wtx) flushIdleHours() {
	var keys [][2]int64
	emptied := false
	for k, d := range w.idleHours {
		if d != 0 {
			keys = append(keys, k)
		}
		emptied = emptied || d < 0
	}
	if len(keys) == 0 {
		return
	}
	slices.SortFunc(keys, func(a, b [2]int64) int {
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		return cmp.Compare(a[1], b[1])
	})
	hours, shards, ns := make([]int64, len(keys)), make([]int32, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		hours[i], shards[i], ns[i] = k[0], int32(k[1])+1, w.idleHours[k] // shard 0 is CompactCounters'

	}
	w.queue(`INSERT INTO guestauth_idle_hours (hour, shard, n) SELECT * FROM unnest($1::bigint[], $2::integer[], $3::bigint[])
		ON CONFLICT (hour, shard) DO UPDATE SET n = guestauth_idle_hours.n + EXCLUDED.n`, hours, shards, ns)
	if !emptied {
		return // only additions: no row reached 0
	}
	w.queue(`DELETE FROM guestauth_idle_hours WHERE (hour, shard) IN (SELECT * FROM unnest($1::bigint[], $2::integer[])) AND n = 0`, hours, shards)
}

// CompactCounters implements storage.Backend: in one transaction, it folds
// the daily counters of days before now's UTC day, and the idle-hour
// counts of hours before the last two, from their write shards into shard
// 0, so the dashboard's reads sum one row per day and series, one per
// hour. Writes never use shard 0, so folding waits on no writer's shard 0
// row; a write to a row being folded is waited for and folded with it.
func (p *Postgres) CompactCounters(ctx context.Context, now time.Time) error {
	today := storage.Day(now)
	hour := floorDiv(ns(now), int64(time.Hour)) - 2
	return p.once(ctx, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `WITH moved AS (DELETE FROM guestauth_daily WHERE day < $1::date AND shard <> 0 RETURNING day, series, n)
				INSERT INTO guestauth_daily (day, series, shard, n) SELECT day, series, 0, sum(n) FROM moved GROUP BY day, series ORDER BY day, series
				ON CONFLICT (day, series, shard) DO UPDATE SET n = guestauth_daily.n + EXCLUDED.n`, today); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `WITH moved AS (DELETE FROM guestauth_idle_hours WHERE hour < $1 AND shard <> 0 RETURNING hour, n)
				INSERT INTO guestauth_idle_hours (hour, shard, n) SELECT hour, 0, sum(n) FROM moved GROUP BY hour ORDER BY hour
				ON CONFLICT (hour, shard) DO UPDATE SET n = guestauth_idle_hours.n + EXCLUDED.n`, hour); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `DELETE FROM guestauth_idle_hours WHERE shard = 0 AND hour < $1 AND n = 0`, hour)
			return err
		})
	})
}

package postgres

import (
	"context"
	"math/rand/v2"
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
		_, err := p.pool.Exec(ctx, addDailySQL, rand.IntN(guestShards), days, series, ns)
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

// CountIdleGuests implements storage.Backend: an index-only count over the
// idle index.
func (p *Postgres) CountIdleGuests(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := p.read(ctx, func(ctx context.Context) error {
		return p.pool.QueryRow(ctx, `SELECT count(*) FROM guestauth_users WHERE idle_ns IS NOT NULL AND idle_ns < $1`, ns(before)).Scan(&n)
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

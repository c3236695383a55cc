package postgres

import (
	"context"
	"math/rand/v2"

	"github.com/jackc/pgx/v5"

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

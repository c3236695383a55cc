package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// SetTracer traces the statements of the pools opened from now on (nil:
// none).
func SetTracer(t pgx.QueryTracer) { testTracer = t }

// Polls counts the follower's successful reads of the change log.
func Polls(p *Postgres) int64 { return p.follow.polls.Load() }

// StopFollowing stops the follower, as a node cut off from the log.
func StopFollowing(p *Postgres) { p.follow.stop() }

// WriteIgnoringAnError runs a write whose function ignores the error of a
// statement (the transaction is then aborted) and queues nothing.
func WriteIgnoringAnError(p *Postgres) error {
	return p.write(bg, nil, func(w *wtx) error {
		_, _ = w.Exec(w.ctx, `SELECT 1 / 0`)
		return nil
	})
}

var bg = context.Background()

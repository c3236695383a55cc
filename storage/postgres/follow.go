package postgres

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Cache coherence across nodes, on the model of Pomerium's databroker: a
// change log written in each write's transaction, a notification as a
// wake-up, and polling as the guarantee.
//
// Every write that changes what a request should see (a user, a session;
// activity times excepted) adds a row to guestauth_changes naming what it
// changed in its own transaction, and calls pg_notify right after the commit
// (in the same round trip; not in the transaction, see wtx.run). Each node's
// follower holds one connection that LISTENs; on a notification, and at
// least every SyncInterval, it reads the rows of transactions that had not
// finished at its previous read (by transaction id, so a transaction that
// commits after a later one is not skipped) and drops those records from
// the identity cache. A lost notification delays a change by at most
// SyncInterval. A node that knows it cannot read the log (its connection
// broke, a read or a reconnect failed) stops trusting its cache at once, and
// one that has not read it for MaxStaleness (a connection hung without an
// error) stops then; either way it reads every identity from the database
// until a read of the log succeeds again. So while the database is down,
// requests needing an identity get 503 (fail-safe), cached ones included.

// Defaults of the coherence options.
const (
	DefaultSyncInterval = 250 * time.Millisecond
	DefaultMaxStaleness = 5 * time.Second
	// changeRetention is how long change rows are kept; a node that could
	// not read the log for longer empties its cache instead.
	changeRetention = 10 * time.Minute
)

const notifyChannel = "guestauth_changes"

type follower struct {
	p        *Postgres
	cfg      *pgx.ConnConfig
	interval time.Duration
	maxStale time.Duration

	lastSync atomic.Int64 // unix ns when the last successful read began
	cut      atomic.Bool  // the log cannot be read now: a failed read, a broken connection
	xmin     string       // oldest transaction unfinished at that read (xid8)
	applied  map[int64]bool
	cleaned  time.Time

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	polls  atomic.Int64 // successful reads, for tests
}

// synced reports whether the cache may be trusted: the follower is not cut
// off from the log, and read it less than MaxStaleness ago.
func (f *follower) synced() bool {
	return !f.cut.Load() && time.Since(time.Unix(0, f.lastSync.Load())) <= f.maxStale
}

// start takes the log's position (the cache is empty: nothing before it
// matters) and starts following it.
func (f *follower) start(ctx context.Context) error {
	started := time.Now()
	if err := f.p.pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`).Scan(&f.xmin); err != nil {
		return err
	}
	f.lastSync.Store(started.UnixNano())
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.done = make(chan struct{})
	go f.run() //nolint:gosec // G118: the follower lives as long as the store, not the call that opened it; stop cancels it
	return nil
}

func (f *follower) stop() {
	f.cancel()
	<-f.done
}

func (f *follower) run() {
	defer close(f.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for f.ctx.Err() == nil {
		if conn == nil {
			var err error
			if conn, err = f.listen(); err != nil {
				f.cut.Store(true)
				conn = nil
				f.sleep(f.interval)
				continue
			}
		}
		if err := f.poll(conn); err != nil {
			f.cut.Store(true)
			conn.Close(context.Background())
			conn = nil
			continue
		}
		wait, cancel := context.WithTimeout(f.ctx, f.interval)
		_, err := conn.WaitForNotification(wait)
		cancel()
		if err != nil && f.ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
			// The connection broke: changes may be missed until the
			// next successful read.
			f.cut.Store(true)
			conn.Close(context.Background())
			conn = nil
		}
	}
}

func (f *follower) sleep(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-f.ctx.Done():
	}
}

// listen opens the follower's own connection (LISTEN needs one that
// stays), outside the pool.
func (f *follower) listen() (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(f.ctx, f.p.timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, f.cfg.Copy())
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// poll reads the changes of the transactions unfinished at the previous
// read and drops what they changed from the cache.
func (f *follower) poll(conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(f.ctx, f.p.timeout)
	defer cancel()
	began := time.Now()
	rows, err := conn.Query(ctx, `WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin)
		SELECT s.xmin::text, c.seq, c.users, c.sessions FROM s LEFT JOIN guestauth_changes c ON c.xid >= $1::xid8 AND c.origin <> $2
		ORDER BY c.seq`, f.xmin, f.p.origin)
	if err != nil {
		return err
	}
	type change struct {
		seq             int64
		users, sessions []string
	}
	var xmin string
	var changes []change
	for rows.Next() {
		var seq pgtype.Int8
		var c change
		if err := rows.Scan(&xmin, &seq, &c.users, &c.sessions); err != nil {
			rows.Close()
			return err
		}
		if seq.Valid {
			c.seq = seq.Int64
			changes = append(changes, c)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	cache := f.p.cache
	if time.Since(time.Unix(0, f.lastSync.Load())) > changeRetention-time.Minute {
		cache.InvalidateAll() // changes older than the log keeps may be missing
	}
	applied := make(map[int64]bool, len(changes))
	for _, c := range changes {
		applied[c.seq] = true
		if f.applied[c.seq] {
			continue
		}
		for _, id := range c.users {
			cache.InvalidateUser(id)
		}
		for _, id := range c.sessions {
			cache.InvalidateSession(id)
		}
	}
	f.xmin, f.applied = xmin, applied
	f.lastSync.Store(began.UnixNano())
	f.cut.Store(false)
	f.polls.Add(1)
	if time.Since(f.cleaned) > time.Minute {
		f.cleaned = time.Now()
		_, _ = conn.Exec(ctx, `DELETE FROM guestauth_changes WHERE at < now() - $1::interval`, changeRetention.String())
	}
	return nil
}

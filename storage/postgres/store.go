package postgres

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// guestShards is the number of rows of guestauth_guest_counts.
const guestShards = 16

// wtx is one write transaction: it remembers the records it changed, to
// drop them from the identity cache after the commit, and the guest
// counter deltas, applied last (see the package comment's lock order).
type wtx struct {
	pgx.Tx
	ctx      context.Context
	p        *Postgres
	users    map[string]bool
	sessions map[string]bool
	live     [guestShards]int64
	kept     [guestShards]int64
	nusers   [guestShards]int64
	nsess    [guestShards]int64
	// idleHours are the changes to guestauth_idle_hours: (hour, shard) ->
	// delta.
	idleHours map[[2]int64]int64
	// daily are the write's daily counts (storage.TxResult's Tally).
	daily []storage.DayCount
	// quiet: the other nodes need not hear of this write (activity times).
	quiet bool
	// tail: the statements sent with COMMIT (see queue); batchErr, when
	// set, translates the batch's error.
	tail     *pgx.Batch
	batchErr func(error) error
	notify   bool // wake the other nodes after the commit
	// ev builds the write's events from what it did (storage.TxResult).
	ev      storage.Events
	created []model.User
	deleted []model.User
	ended   int
}

// write runs fn in a transaction, then stores ev's records in it (see
// storage.Events). The identity cache is told a write is under way for its
// whole length (see storage.IdentityCache), and drops what the transaction
// changed.
//
// Round trips: BEGIN is one (a connection the server dropped fails there,
// before anything ran, and is retried); fn's reads and checked writes one
// each; then the statements fn queued (wtx.queue), the outbox rows, the
// change log entry, the guest counter updates and COMMIT go in one batch,
// one round trip.
func (p *Postgres) write(ctx context.Context, ev storage.Events, fn func(w *wtx) error) error {
	octx, cancel, err := p.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	p.cache.WriteBegin()
	defer p.cache.WriteEnd()
	var w *wtx
	for attempt := 0; ; attempt++ {
		w = &wtx{ctx: octx, p: p, users: map[string]bool{}, sessions: map[string]bool{}, ev: ev}
		began := false
		err = p.pool.AcquireFunc(octx, func(c *pgxpool.Conn) error {
			tx, err := c.Begin(octx)
			if err != nil {
				return err
			}
			began = true
			w.Tx = tx
			w.tail = &pgx.Batch{}
			if err = w.run(fn); err != nil {
				// After a failed batch the server has not committed (an
				// error skips the rest of the batch, COMMIT included) or
				// the COMMIT itself failed; either way this ends the
				// transaction (a failed rollback closes the connection).
				_ = tx.Rollback(octx)
			}
			return err
		})
		// A pooled connection the server dropped (a restart) fails at
		// BEGIN, before anything ran: retry once on a fresh one.
		if began || attempt > 0 || !connLost(err) || octx.Err() != nil {
			break
		}
		p.pool.Reset() // after a server restart every pooled connection is dead
	}
	for id := range w.users {
		p.cache.InvalidateUser(id)
	}
	for id := range w.sessions {
		p.cache.InvalidateSession(id)
	}
	return opErr(ctx, err)
}

// run runs fn in the open transaction, then sends the queued statements
// and COMMIT in one batch.
func (w *wtx) run(fn func(w *wtx) error) error {
	if err := fn(w); err != nil {
		return err
	}
	err := w.storeEvents()
	if err != nil {
		return err
	}
	w.publish()
	w.flushCounts()
	w.tail.Queue("COMMIT")
	n := w.tail.Len()
	if w.notify {
		// After COMMIT, not in the transaction: a transaction that
		// notifies holds PostgreSQL's notify lock until its commit is on
		// disk, which would make every write wait for the previous one's
		// flush. A wake-up lost with the connection is made up by the
		// followers' polling.
		w.tail.Queue(`SELECT pg_notify('` + notifyChannel + `', '')`)
	}
	br := w.SendBatch(w.ctx, w.tail)
	for i := range n {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err != nil {
			break
		}
		if i == n-1 && tag.String() == "ROLLBACK" { // COMMIT of a transaction an error aborted
			err = pgx.ErrTxCommitRollback
		}
	}
	if err != nil {
		_ = br.Close()
		if w.batchErr != nil {
			err = w.batchErr(err)
		}
		return err
	}
	_ = br.Close() // committed: the notification's outcome changes nothing
	return nil
}

// queue adds a statement to the batch sent with COMMIT (see write), after
// those queued before it. Only for statements whose result nobody reads
// and whose refusal is an error of the server, which aborts the batch and
// so the transaction: a check on the client would come after the commit.
func (w *wtx) queue(sql string, args ...any) {
	w.tail.Queue(sql, args...)
}

// read runs fn, a read, with a bounded context, once more if the
// connection was lost; its errors are classified.
func (p *Postgres) read(ctx context.Context, fn func(ctx context.Context) error) error {
	octx, cancel, err := p.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	err = fn(octx)
	if connLost(err) && octx.Err() == nil { // reads are safe to repeat
		p.pool.Reset() // after a server restart every pooled connection is dead
		err = fn(octx)
	}
	return opErr(ctx, err)
}

// once is read without the retry, for statements that write: a dropped
// connection may have lost the answer to a commit.
func (p *Postgres) once(ctx context.Context, fn func(ctx context.Context) error) error {
	octx, cancel, err := p.op(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	return opErr(ctx, fn(octx))
}

// connLost reports whether err is a connection the server dropped or
// refused (as after a restart), rather than an answer to the statement.
func connLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")
	}
	var ue userError
	var inv invalid
	return !errors.As(err, &ue) && !errors.As(err, &inv) && !errors.Is(err, model.ErrNotFound) &&
		!errors.Is(err, model.ErrExists) && !errors.Is(err, model.ErrNameTaken) && !errors.Is(err, model.ErrEmailTaken)
}

func shard(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % guestShards)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// publish queues the change log entry of the records this transaction
// changed; the other nodes' followers are woken after the commit (see run).
func (w *wtx) publish() {
	if w.quiet || len(w.users)+len(w.sessions) == 0 {
		return
	}
	users := make([]string, 0, len(w.users))
	for id := range w.users {
		users = append(users, id)
	}
	sessions := make([]string, 0, len(w.sessions))
	for id := range w.sessions {
		sessions = append(sessions, id)
	}
	w.queue(`INSERT INTO guestauth_changes (origin, users, sessions) VALUES ($1, $2, $3)`, w.p.origin, users, sessions)
	w.notify = true
}

// flushCounts queues the guest counter updates, last (lock order).
func (w *wtx) flushCounts() {
	for i := range guestShards {
		if w.live[i] == 0 && w.kept[i] == 0 && w.nusers[i] == 0 && w.nsess[i] == 0 {
			continue
		}
		w.queue(`UPDATE guestauth_guest_counts SET live = greatest(live + $2, 0), kept = greatest(kept + $3, 0), users = users + $4, sessions = sessions + $5 WHERE shard = $1`,
			i, w.live[i], w.kept[i], w.nusers[i], w.nsess[i])
	}
	w.flushIdleHours()
	if len(w.daily) > 0 {
		days, series, ns := dailyCols(w.daily)
		w.queue(addDailySQL, 1+rand.IntN(guestShards-1), days, series, ns) //nolint:gosec // G404: a shard to spread writes over (shard 0 is CompactCounters')

	}
}

func ns(t time.Time) int64 { return t.UnixNano() }

// userCols are the index columns of a user record.
func userCols(u *model.User) (idle *int64, orphan bool) {
	if u.Ephemeral() && !u.Kept {
		v := ns(u.ActiveAt())
		idle = &v
		orphan = !u.OrphanedAt.IsZero() && u.DeviceKID == ""
	}
	return idle, orphan
}

// count notes the change of a user from old to u (either nil): the guest
// counters and the cache entry to drop. It returns the user's id.
func (w *wtx) count(old, u *model.User) string {
	isGuest := func(x *model.User) bool { return x != nil && x.IsAnonymous() }
	isKept := func(x *model.User) bool { return isGuest(x) && x.Kept }
	var id string
	if u != nil {
		id = u.ID
	} else {
		id = old.ID
	}
	sh := shard(id)
	w.live[sh] += b2i(isGuest(u)) - b2i(isGuest(old))
	w.kept[sh] += b2i(isKept(u)) - b2i(isKept(old))
	w.nusers[sh] += b2i(u != nil) - b2i(old != nil)
	oldIdle, newIdle := idleHour(old), idleHour(u)
	if oldIdle != newIdle {
		if w.idleHours == nil {
			w.idleHours = map[[2]int64]int64{}
		}
		if oldIdle != nil {
			w.idleHours[[2]int64{*oldIdle, int64(sh)}]--
		}
		if newIdle != nil {
			w.idleHours[[2]int64{*newIdle, int64(sh)}]++
		}
	}
	w.users[id] = true
	return id
}

const insertUser = `INSERT INTO guestauth_users (id, name_key, tag, idle_ns, orphan, data, email_key) VALUES ($1, $2, $3, $4, $5, $6, $7)`

// emailCol is the email_key column of u: NULL without a verified address.
func emailCol(u *model.User) *string {
	if k := u.VerifiedEmailKey(); k != "" {
		return &k
	}
	return nil
}

// endSessions runs q, a DELETE of sessions RETURNING their ids and user
// ids, marks them changed (for the caches and the change log) and counts
// them off the session counter (in their users' shards); it returns how
// many.
func (w *wtx) endSessions(q string, args ...any) (int, error) {
	rows, err := w.Query(w.ctx, q, args...)
	if err != nil {
		return 0, err
	}
	ended, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var e [2]string
		err := r.Scan(&e[0], &e[1])
		return e, err
	})
	if err != nil {
		return 0, err
	}
	for _, e := range ended {
		w.sessions[e[0]] = true
		w.nsess[shard(e[1])]--
	}
	return len(ended), nil
}

// saveUser writes u over old (old nil: a new user; u nil: delete old, its
// sessions and device) and counts the guest changes.
func (w *wtx) saveUser(old, u *model.User) error {
	id := w.count(old, u)
	if u == nil {
		w.deleted = append(w.deleted, *old)
		if _, err := w.endSessions(`DELETE FROM guestauth_sessions WHERE user_id = $1 RETURNING id, user_id`, id); err != nil {
			return err
		}
		_, err := w.Exec(w.ctx, `DELETE FROM guestauth_users WHERE id = $1`, id) // devices cascade
		return err
	}
	raw, err := json.Marshal(u)
	if err != nil {
		return err
	}
	idle, orphan := userCols(u)
	if old == nil {
		w.created = append(w.created, *u)
		_, err = w.Exec(w.ctx, insertUser,
			u.ID, model.NameKey(u.Name), u.Tag, idle, orphan, raw, emailCol(u))
		return err
	}
	_, err = w.Exec(w.ctx, `UPDATE guestauth_users SET name_key = $2, tag = $3, idle_ns = $4, orphan = $5, data = $6, email_key = $7 WHERE id = $1`,
		u.ID, model.NameKey(u.Name), u.Tag, idle, orphan, raw, emailCol(u))
	return err
}

// lockUser reads and locks a user (FOR UPDATE when it may be deleted, FOR
// NO KEY UPDATE otherwise).
func (w *wtx) lockUser(id string, forDelete bool) (*model.User, error) {
	q := `SELECT data FROM guestauth_users WHERE id = $1 FOR NO KEY UPDATE`
	if forDelete {
		q = `SELECT data FROM guestauth_users WHERE id = $1 FOR UPDATE`
	}
	var raw []byte
	if err := w.QueryRow(w.ctx, q, id).Scan(&raw); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, model.ErrNotFound
		}
		return nil, err
	}
	var u model.User
	if err := storage.DecodeRecord(raw, &u); err != nil {
		return nil, fmt.Errorf("user record %s: %w", id, err)
	}
	return &u, nil
}

// lockUsers locks the listed users in id order and returns those that
// exist.
func (w *wtx) lockUsers(ids []string, forDelete bool) ([]model.User, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	q := `SELECT data FROM guestauth_users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE`
	if forDelete {
		q = `SELECT data FROM guestauth_users WHERE id = ANY($1) ORDER BY id FOR UPDATE`
	}
	rows, err := w.Query(w.ctx, q, ids)
	if err != nil {
		return nil, err
	}
	return collectJSON[model.User](rows)
}

func collectJSON[T any](rows pgx.Rows) ([]T, error) {
	var out []T
	defer rows.Close()
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, err
		}
		var v T
		if err := storage.DecodeRecord(raw, &v); err != nil {
			return nil, fmt.Errorf("decoding a record: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

const upsertSession = `INSERT INTO guestauth_sessions (id, user_id, created_ns, ends_ns, data) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET created_ns = EXCLUDED.created_ns, ends_ns = EXCLUDED.ends_ns, data = EXCLUDED.data
		WHERE guestauth_sessions.user_id = EXCLUDED.user_id`

// putSession stores s (new or replacing its previous version) for the
// locked user u, and clears u's orphan mark. owned: s was read in this
// transaction under u's lock and belongs to u, so the write cannot be
// refused and is queued (see queue).
func (w *wtx) putSession(u *model.User, s *model.Session, owned bool) error {
	if s.ID == "" || s.UserID == "" {
		return invalid("session needs an id and a user id")
	}
	raw, err := json.Marshal(s) //nolint:gosec // G117: the refresh key is stored, as in bbolt; the database is as secret as the file
	if err != nil {
		return err
	}
	w.sessions[s.ID] = true
	if owned && s.UserID == u.ID {
		w.queue(upsertSession, s.ID, s.UserID, ns(s.CreatedAt), ns(s.EndsAt()), raw)
	} else {
		// xmax = 0: the row is new (inserted, not updated), for the
		// session counter.
		var inserted bool
		err := w.QueryRow(w.ctx, upsertSession+` RETURNING (xmax = 0)`, s.ID, s.UserID, ns(s.CreatedAt), ns(s.EndsAt()), raw).Scan(&inserted)
		if errors.Is(err, pgx.ErrNoRows) {
			return invalid("a session's user cannot change")
		}
		if err != nil {
			return err
		}
		if inserted {
			w.nsess[shard(s.UserID)]++
		}
	}
	if !u.OrphanedAt.IsZero() {
		old := *u
		u.OrphanedAt = time.Time{}
		return w.saveUser(&old, u)
	}
	return nil
}

// markOrphan stamps the locked user u if it is ephemeral and has no
// session left.
func (w *wtx) markOrphan(u *model.User, now time.Time) error {
	if !u.Ephemeral() || !u.OrphanedAt.IsZero() {
		return nil
	}
	var any bool
	if err := w.QueryRow(w.ctx, `SELECT EXISTS (SELECT 1 FROM guestauth_sessions WHERE user_id = $1)`, u.ID).Scan(&any); err != nil || any {
		return err
	}
	old := *u
	u.OrphanedAt = now.UTC()
	return w.saveUser(&old, u)
}

// CreateUser implements storage.Backend. Its statements all go in the
// batch with COMMIT: with BEGIN, two round trips, four statements besides
// BEGIN and COMMIT (user, device, session, guest counter).
func (p *Postgres) CreateUser(ctx context.Context, u *model.User, s *model.Session, dev *model.Device, ev storage.Events) error {
	if u.ID == "" || u.Name == "" {
		return invalid("user needs an id and a name")
	}
	if s != nil {
		if s.ID == "" || s.UserID == "" {
			return invalid("session needs an id and a user id")
		}
		if s.UserID != u.ID {
			return invalid("the first session belongs to another user")
		}
	}
	return p.write(ctx, ev, func(w *wtx) error {
		// No change log entry nor wake-up: the user, its session and its
		// device are new (their inserts fail otherwise), and the identity
		// caches hold only records that were found, so no node can hold
		// anything this write makes stale.
		w.quiet = true
		stored := u
		if s != nil && !u.OrphanedAt.IsZero() { // a session clears the orphan mark
			cp := *u
			cp.OrphanedAt = time.Time{}
			stored = &cp
		}
		w.count(nil, u)
		w.created = append(w.created, *u)
		raw, err := json.Marshal(stored)
		if err != nil {
			return err
		}
		idle, orphan := userCols(stored)
		w.queue(insertUser, u.ID, model.NameKey(u.Name), u.Tag, idle, orphan, raw, emailCol(stored))
		if dev != nil {
			raw, err := json.Marshal(dev)
			if err != nil {
				return err
			}
			w.queue(`INSERT INTO guestauth_devices (kid, user_id, data) VALUES ($1, $2, $3)`, dev.KID, u.ID, raw)
		}
		if s != nil {
			raw, err := json.Marshal(s) //nolint:gosec // G117: the refresh key is stored, as in bbolt; the database is as secret as the file
			if err != nil {
				return err
			}
			w.sessions[s.ID] = true
			// A plain INSERT: the user is new, so a session with this id
			// can only be another user's (refused, as putSession does).
			w.queue(`INSERT INTO guestauth_sessions (id, user_id, created_ns, ends_ns, data) VALUES ($1, $2, $3, $4, $5)`,
				s.ID, s.UserID, ns(s.CreatedAt), ns(s.EndsAt()), raw)
			w.nsess[shard(s.UserID)]++
			w.batchErr = func(err error) error {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "guestauth_sessions_pkey" {
					return invalid("a session's user cannot change")
				}
				return err
			}
		}
		return nil
	})
}

// GetUser implements storage.Backend.
func (p *Postgres) GetUser(ctx context.Context, id string) (*model.User, error) {
	return p.getUser(ctx, `SELECT data FROM guestauth_users WHERE id = $1`, id)
}

// GetUserByName implements storage.Backend.
func (p *Postgres) GetUserByName(ctx context.Context, name string) (*model.User, error) {
	return p.getUser(ctx, `SELECT data FROM guestauth_users WHERE name_key = $1`, model.NameKey(name))
}

// FindUsersByName implements storage.Backend. name_key is COLLATE "C"
// (byte order), so the names with the prefix are one range of its unique
// index, bounded by the prefix followed by the highest code point: a
// range, not a LIKE, so a cached generic plan still uses the index.
func (p *Postgres) FindUsersByName(ctx context.Context, prefix string, limit int) (users []model.User, err error) {
	key := model.NameKey(prefix)
	err = p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, `SELECT data FROM guestauth_users WHERE name_key >= $1 AND name_key < $2 AND starts_with(name_key, $1)
			ORDER BY name_key LIMIT $3`, key, key+"\U0010FFFF", max(limit, 0))
		if err != nil {
			return err
		}
		users, err = collectJSON[model.User](rows)
		return err
	})
	return users, err
}

// GetUserByEmail implements storage.Backend.
func (p *Postgres) GetUserByEmail(ctx context.Context, email string) (*model.User, error) {
	key := model.EmailKey(email)
	if key == "" {
		return nil, model.ErrNotFound
	}
	return p.getUser(ctx, `SELECT data FROM guestauth_users WHERE email_key = $1`, key)
}

func (p *Postgres) getUser(ctx context.Context, q, arg string) (*model.User, error) {
	var u model.User
	err := p.read(ctx, func(ctx context.Context) error { return getJSON(ctx, p, &u, q, arg) })
	if err != nil {
		return nil, err
	}
	return &u, nil
}

func getJSON(ctx context.Context, p *Postgres, v any, q string, args ...any) error {
	var raw []byte
	if err := p.pool.QueryRow(ctx, q, args...).Scan(&raw); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return model.ErrNotFound
		}
		return err
	}
	if err := storage.DecodeRecord(raw, v); err != nil {
		return invalid("decoding a record: " + err.Error())
	}
	return nil
}

// UpdateUser implements storage.Backend: fn runs once, on the locked row.
func (p *Postgres) UpdateUser(ctx context.Context, id string, fn func(u *model.User) error, ev storage.Events) (*model.User, error) {
	var out *model.User
	err := p.write(ctx, ev, func(w *wtx) error {
		old, err := w.lockUser(id, false)
		if err != nil {
			return err
		}
		u, err := changedUser(old, fn)
		if err != nil {
			return err
		}
		if err := w.saveUser(old, u); err != nil {
			return err
		}
		out = u
		return nil
	})
	return out, err
}

// changedUser is a copy of old changed by fn (if any), checked as every
// user write is: the id stays, the name is not empty.
func changedUser(old *model.User, fn func(u *model.User) error) (*model.User, error) {
	u := *old
	if fn != nil {
		if err := fn(&u); err != nil {
			return nil, userError{err}
		}
	}
	if u.ID != old.ID {
		return nil, invalid("a user's id cannot change")
	}
	if model.NameKey(u.Name) == "" {
		return nil, invalid("a user's name cannot be empty")
	}
	return &u, nil
}

// DeleteUser implements storage.Backend.
func (p *Postgres) DeleteUser(ctx context.Context, id string, ev storage.Events) error {
	return p.write(ctx, ev, func(w *wtx) error {
		u, err := w.lockUser(id, true)
		if err != nil {
			return err
		}
		return w.saveUser(u, nil)
	})
}

// ListUsers implements storage.Backend.
func (p *Postgres) ListUsers(ctx context.Context, after, tag string, limit int) (users []model.User, next string, err error) {
	limit = max(limit, 1)
	err = p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, `SELECT data FROM guestauth_users WHERE id > $1 AND ($2 = '' OR tag = $2) ORDER BY id LIMIT $3`, after, tag, limit+1)
		if err != nil {
			return err
		}
		users, err = collectJSON[model.User](rows)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	if len(users) > limit {
		users = users[:limit]
		next = users[limit-1].ID
	}
	return users, next, nil
}

// Identity implements storage.Backend: from the identity cache, or one
// query reading both records.
func (p *Postgres) Identity(ctx context.Context, userID, sessionID string) (*model.User, *model.Session, error) {
	if err := storage.CtxErr(ctx); err != nil {
		return nil, nil, err
	}
	// A node that could not read the change log for MaxStaleness reads
	// through: its cache may miss other nodes' changes.
	synced := p.follow == nil || p.follow.synced()
	if synced {
		if u, s, ok := p.cache.Get(userID, sessionID); ok {
			return u, s, nil
		}
	}
	before := p.cache.Snapshot()
	var u model.User
	var s model.Session
	err := p.read(ctx, func(ctx context.Context) error {
		var ru, rs []byte
		err := p.pool.QueryRow(ctx, `SELECT u.data, s.data FROM guestauth_sessions s JOIN guestauth_users u ON u.id = s.user_id
			WHERE s.id = $1 AND u.id = $2`, sessionID, userID).Scan(&ru, &rs)
		if errors.Is(err, pgx.ErrNoRows) {
			return model.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := storage.DecodeRecord(ru, &u); err != nil {
			return invalid("decoding a user: " + err.Error())
		}
		if err := storage.DecodeRecord(rs, &s); err != nil {
			return invalid("decoding a session: " + err.Error())
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if synced {
		p.cache.Put(before, &u, &s)
	}
	return &u, &s, nil
}

// GetSession implements storage.Backend.
func (p *Postgres) GetSession(ctx context.Context, id string) (*model.Session, error) {
	var s model.Session
	err := p.read(ctx, func(ctx context.Context) error {
		return getJSON(ctx, p, &s, `SELECT data FROM guestauth_sessions WHERE id = $1`, id)
	})
	if err != nil {
		return nil, err
	}
	return &s, nil
}

// sessionOwner locks the owner of session id (the lock order is user, then
// session) and reads the session.
func (w *wtx) sessionOwner(id string, forDelete bool) (*model.User, *model.Session, error) {
	// One round trip: the owner is locked by the first statement, and the
	// second, run after it (under READ COMMITTED, with a snapshot taken
	// then), reads the session as the lock holders left it.
	lock := `SELECT data FROM guestauth_users WHERE id = (SELECT user_id FROM guestauth_sessions WHERE id = $1) FOR NO KEY UPDATE`
	if forDelete {
		lock = `SELECT data FROM guestauth_users WHERE id = (SELECT user_id FROM guestauth_sessions WHERE id = $1) FOR UPDATE`
	}
	var uraw, sraw []byte
	first := func(dst *[]byte) func(pgx.Rows) error {
		return func(rows pgx.Rows) error {
			if rows.Next() {
				if err := rows.Scan(dst); err != nil {
					return err
				}
			}
			return rows.Err()
		}
	}
	b := &pgx.Batch{}
	b.Queue(lock, id).Query(first(&uraw))
	b.Queue(`SELECT data FROM guestauth_sessions WHERE id = $1`, id).Query(first(&sraw))
	if err := w.SendBatch(w.ctx, b).Close(); err != nil {
		return nil, nil, err
	}
	if uraw == nil || sraw == nil {
		return nil, nil, model.ErrNotFound // no such session, or ended meanwhile
	}
	var u model.User
	if err := storage.DecodeRecord(uraw, &u); err != nil {
		return nil, nil, fmt.Errorf("user record of session %s: %w", id, err)
	}
	var s model.Session
	if err := storage.DecodeRecord(sraw, &s); err != nil {
		return nil, nil, fmt.Errorf("session record %s: %w", id, err)
	}
	if s.UserID != u.ID {
		return nil, nil, model.ErrNotFound // ended meanwhile (and its id reused)
	}
	return &u, &s, nil
}

// UpdateSession implements storage.Backend: fn runs once, with the owner
// locked.
func (p *Postgres) UpdateSession(ctx context.Context, id string, fn func(s *model.Session) error, ev storage.Events) (*model.Session, error) {
	var out *model.Session
	err := p.write(ctx, ev, func(w *wtx) error {
		u, s, err := w.sessionOwner(id, false)
		if err != nil {
			return err
		}
		if err := fn(s); err != nil {
			return userError{err}
		}
		if s.ID != id {
			return invalid("a session's id cannot change")
		}
		if s.UserID != u.ID {
			return invalid("a session's user cannot change")
		}
		if err := w.putSession(u, s, true); err != nil {
			return err
		}
		out = s
		return nil
	})
	return out, err
}

// PutSession implements storage.Backend.
func (p *Postgres) PutSession(ctx context.Context, s *model.Session) error {
	_, err := p.PutSessionLimit(ctx, s, 0)
	return err
}

// PutSessionLimit implements storage.Backend.
func (p *Postgres) PutSessionLimit(ctx context.Context, s *model.Session, keep int) (int, error) {
	var ended int
	err := p.write(ctx, nil, func(w *wtx) error {
		var err error
		ended, err = w.putSessionLimit(s, keep)
		return err
	})
	return ended, err
}

// putSessionLimit is PutSessionLimit in w.
func (w *wtx) putSessionLimit(s *model.Session, keep int) (int, error) {
	u, err := w.lockUser(s.UserID, false)
	if err != nil {
		return 0, err
	}
	if err := w.putSession(u, s, false); err != nil {
		return 0, err
	}
	if keep <= 0 {
		return 0, nil
	}
	ended, err := w.endSessions(`DELETE FROM guestauth_sessions WHERE id IN (
			SELECT id FROM guestauth_sessions WHERE user_id = $1 AND id <> $2 ORDER BY created_ns, id
			LIMIT greatest((SELECT count(*) FROM guestauth_sessions WHERE user_id = $1) - $3, 0))
		RETURNING id, user_id`, s.UserID, s.ID, keep)
	if err != nil {
		return 0, err
	}
	w.ended = ended
	return ended, nil
}

// DeleteSession implements storage.Backend.
func (p *Postgres) DeleteSession(ctx context.Context, id string, ev storage.Events) error {
	now := p.now()
	return p.write(ctx, ev, func(w *wtx) error {
		u, _, err := w.sessionOwner(id, false)
		if err != nil {
			return err
		}
		w.sessions[id] = true
		tag, err := w.Exec(w.ctx, `DELETE FROM guestauth_sessions WHERE id = $1`, id)
		if err != nil {
			return err
		}
		w.ended = int(tag.RowsAffected())
		w.nsess[shard(u.ID)] -= tag.RowsAffected()
		return w.markOrphan(u, now)
	})
}

// DeleteUserSessions implements storage.Backend.
func (p *Postgres) DeleteUserSessions(ctx context.Context, userID, keep string, ev storage.Events) (int, error) {
	now := p.now()
	var n int
	err := p.write(ctx, ev, func(w *wtx) error {
		n = 0
		u, err := w.lockUser(userID, false)
		if errors.Is(err, model.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if n, err = w.endSessions(`DELETE FROM guestauth_sessions WHERE user_id = $1 AND id <> $2 RETURNING id, user_id`, userID, keep); err != nil {
			return err
		}
		w.ended = n
		return w.markOrphan(u, now)
	})
	return n, err
}

// DeleteEndedSessions implements storage.Backend. Sessions another
// transaction holds are skipped (SKIP LOCKED), so sweepers on several
// nodes share the work instead of queueing.
func (p *Postgres) DeleteEndedSessions(ctx context.Context, now time.Time, limit int) (int, error) {
	var n int
	err := p.write(ctx, nil, func(w *wtx) error {
		n = 0
		rows, err := w.Query(w.ctx, `SELECT DISTINCT user_id FROM (SELECT user_id FROM guestauth_sessions WHERE ends_ns <= $1
			ORDER BY ends_ns, id LIMIT $2) e`, ns(now), limit)
		if err != nil {
			return err
		}
		candidates, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		// Owners another transaction holds (a refresh, another node's
		// sweep) are skipped, not waited for: the lock order stays user
		// first, and sweepers on several nodes share the work.
		slices.Sort(candidates)
		rows, err = w.Query(w.ctx, `SELECT data FROM guestauth_users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE SKIP LOCKED`, candidates)
		if err != nil {
			return err
		}
		users, err := collectJSON[model.User](rows)
		if err != nil {
			return err
		}
		owners := make([]string, len(users))
		for i := range users {
			owners[i] = users[i].ID
		}
		// Re-read under the owners' locks: a refresh may have moved an end.
		if n, err = w.endSessions(`DELETE FROM guestauth_sessions WHERE id IN (SELECT id FROM guestauth_sessions
			WHERE ends_ns <= $1 AND user_id = ANY($2) ORDER BY ends_ns, id LIMIT $3) RETURNING id, user_id`, ns(now), owners, limit); err != nil {
			return err
		}
		for i := range users {
			if err := w.markOrphan(&users[i], now); err != nil {
				return err
			}
		}
		w.ended = n
		return nil
	})
	return n, err
}

// GetDevice implements storage.Backend.
func (p *Postgres) GetDevice(ctx context.Context, kid string) (*model.Device, error) {
	var d model.Device
	err := p.read(ctx, func(ctx context.Context) error {
		return getJSON(ctx, p, &d, `SELECT data FROM guestauth_devices WHERE kid = $1`, kid)
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

func challengeHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

const purgeChallenges = `DELETE FROM guestauth_challenges WHERE hash IN (SELECT hash FROM guestauth_challenges
	WHERE expires_ns <= $1 ORDER BY expires_ns LIMIT 16 FOR UPDATE SKIP LOCKED)`

// PutChallenge implements storage.Backend.
func (p *Postgres) PutChallenge(ctx context.Context, token string, c model.Challenge) error {
	if token == "" || c.ExpiresAt.IsZero() {
		return invalid("a challenge needs a token and an expiry")
	}
	raw, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	return p.once(ctx, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, purgeChallenges, ns(c.CreatedAt)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO guestauth_challenges (hash, expires_ns, data) VALUES ($1, $2, $3)`,
				challengeHash(token), ns(c.ExpiresAt), raw)
			return err
		})
	})
}

// ConsumeChallenge implements storage.Backend: one DELETE ... RETURNING,
// so of concurrent consumers exactly one gets the row.
func (p *Postgres) ConsumeChallenge(ctx context.Context, token string, now time.Time) (*model.Challenge, error) {
	var c *model.Challenge
	err := p.once(ctx, func(ctx context.Context) error {
		return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			c = nil
			if _, err := tx.Exec(ctx, purgeChallenges, ns(now)); err != nil {
				return err
			}
			var raw []byte
			err := tx.QueryRow(ctx, `DELETE FROM guestauth_challenges WHERE hash = $1 RETURNING data`, challengeHash(token)).Scan(&raw)
			if errors.Is(err, pgx.ErrNoRows) {
				return nil
			}
			if err != nil {
				return err
			}
			var got model.Challenge
			if err := storage.DecodeRecord(raw, &got); err != nil {
				return invalid("challenge record: " + err.Error())
			}
			if now.Before(got.ExpiresAt) {
				c = &got
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, model.ErrNotFound
	}
	return c, nil
}

// GuestCounts implements storage.Backend: the sum of the counter shards.
func (p *Postgres) GuestCounts(ctx context.Context) (live, kept int64, err error) {
	err = p.read(ctx, func(ctx context.Context) error {
		return p.pool.QueryRow(ctx, `SELECT coalesce(sum(live), 0)::bigint, coalesce(sum(kept), 0)::bigint FROM guestauth_guest_counts`).Scan(&live, &kept)
	})
	return live, kept, err
}

// TouchUsers implements storage.Backend, in one transaction.
func (p *Postgres) TouchUsers(ctx context.Context, at map[string]time.Time) (int, error) {
	ids := make([]string, 0, len(at))
	for id := range at {
		ids = append(ids, id)
	}
	var touched map[string]time.Time
	err := p.write(ctx, nil, func(w *wtx) error {
		touched = make(map[string]time.Time, len(ids))
		w.quiet = true // activity: the other nodes' caches may keep the older time
		users, err := w.lockUsers(ids, false)
		if err != nil {
			return err
		}
		for i := range users {
			u := &users[i]
			t := at[u.ID]
			if !t.After(u.LastActiveAt) {
				continue
			}
			old := *u
			u.LastActiveAt = t.UTC()
			if err := w.saveUser(&old, u); err != nil {
				return err
			}
			touched[u.ID] = u.LastActiveAt
		}
		// This node's cache keeps the touched users, with their new time
		// (storage.IdentityCache.TouchUsers), rather than dropping them.
		clear(w.users)
		return nil
	})
	if err != nil {
		return 0, err
	}
	p.cache.TouchUsers(touched)
	return len(touched), nil
}

// scan calls fn for each user q selects, from one statement (one
// consistent snapshot), until fn returns false.
func (p *Postgres) scan(ctx context.Context, fn func(u *model.User) bool, q string, args ...any) error {
	if err := storage.CtxErr(ctx); err != nil {
		return err
	}
	rows, err := p.pool.Query(ctx, q, args...)
	if err != nil {
		return opErr(ctx, err)
	}
	defer rows.Close()
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return opErr(ctx, err)
		}
		var u model.User
		if err := storage.DecodeRecord(raw, &u); err != nil {
			return fmt.Errorf("decoding a user: %w", err)
		}
		if !fn(&u) {
			return nil
		}
	}
	return opErr(ctx, rows.Err())
}

// ScanIdleGuests implements storage.Backend.
func (p *Postgres) ScanIdleGuests(ctx context.Context, before time.Time, fn func(u *model.User) bool) error {
	return p.scan(ctx, fn, `SELECT data FROM guestauth_users WHERE idle_ns < $1 ORDER BY idle_ns, id`, ns(before))
}

// ScanOrphans implements storage.Backend.
func (p *Postgres) ScanOrphans(ctx context.Context, fn func(u *model.User) bool) error {
	return p.scan(ctx, fn, `SELECT data FROM guestauth_users WHERE orphan ORDER BY id`)
}

// DeleteUsersIf implements storage.Backend, in one transaction.
func (p *Postgres) DeleteUsersIf(ctx context.Context, ids []string, pred func(u *model.User) bool, ev storage.Events) ([]model.User, error) {
	var deleted []model.User
	err := p.write(ctx, ev, func(w *wtx) error {
		deleted = nil
		users, err := w.lockUsers(ids, true)
		if err != nil {
			return err
		}
		for i := range users {
			if !pred(&users[i]) {
				continue
			}
			if err := w.saveUser(&users[i], nil); err != nil {
				return err
			}
			deleted = append(deleted, users[i])
		}
		return nil
	})
	return deleted, err
}

// SigningKeys implements storage.Backend, oldest first.
func (p *Postgres) SigningKeys(ctx context.Context) ([]model.SigningKey, error) {
	var keys []model.SigningKey
	err := p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, `SELECT data FROM guestauth_signing_keys ORDER BY created_ns, kid`)
		if err != nil {
			return err
		}
		keys, err = collectJSON[model.SigningKey](rows)
		return err
	})
	return keys, err
}

// DeleteSigningKey implements storage.Backend.
func (p *Postgres) DeleteSigningKey(ctx context.Context, kid string) error {
	return p.once(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, `DELETE FROM guestauth_signing_keys WHERE kid = $1`, kid)
		return err
	})
}

// AddSigningKey implements storage.Backend.
func (p *Postgres) AddSigningKey(ctx context.Context, k model.SigningKey) error {
	raw, err := json.Marshal(k)
	if err != nil {
		return err
	}
	return p.once(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, `INSERT INTO guestauth_signing_keys (kid, created_ns, data) VALUES ($1, $2, $3)`, k.KID, ns(k.CreatedAt), raw)
		return err
	})
}

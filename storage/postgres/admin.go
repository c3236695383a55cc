package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/storage"
)

// Stats implements storage.Backend. FileSize is the database's size,
// DataSize that of guestauth's tables and indexes.
func (p *Postgres) Stats(ctx context.Context) (*storage.Stats, error) {
	st := &storage.Stats{Path: p.desc}
	err := p.read(ctx, func(ctx context.Context) error {
		return p.pool.QueryRow(ctx, `SELECT
				(SELECT coalesce(sum(users), 0)::bigint FROM guestauth_guest_counts),
				(SELECT coalesce(sum(sessions), 0)::bigint FROM guestauth_guest_counts),
				(SELECT coalesce(sum(live), 0)::bigint FROM guestauth_guest_counts),
				(SELECT coalesce(sum(kept), 0)::bigint FROM guestauth_guest_counts),
				pg_database_size(current_database()),
				(SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
					WHERE c.relkind = 'r' AND c.relname LIKE 'guestauth\_%' AND c.relnamespace = current_schema()::regnamespace)`).
			Scan(&st.Users, &st.Sessions, &st.LiveGuests, &st.KeptGuests, &st.FileSize, &st.DataSize)
	})
	if err != nil {
		return nil, err
	}
	st.NormalUsers = max(st.Users-st.LiveGuests, 0)
	return st, nil
}

// Counts implements storage.Backend: the sixteen counter rows.
func (p *Postgres) Counts(ctx context.Context) (*storage.Stats, error) {
	st := &storage.Stats{}
	err := p.read(ctx, func(ctx context.Context) error {
		return p.pool.QueryRow(ctx, `SELECT coalesce(sum(users), 0)::bigint, coalesce(sum(sessions), 0)::bigint,
				coalesce(sum(live), 0)::bigint, coalesce(sum(kept), 0)::bigint FROM guestauth_guest_counts`).
			Scan(&st.Users, &st.Sessions, &st.LiveGuests, &st.KeptGuests)
	})
	if err != nil {
		return nil, err
	}
	st.NormalUsers = max(st.Users-st.LiveGuests, 0)
	return st, nil
}

// ExportFormat is the first line of a Backup.
const ExportFormat = "guestauth-export-v1"

// Backup implements storage.Backend: an export of the whole store as JSON
// lines, from one REPEATABLE READ snapshot: a header line
// {"format":"guestauth-export-v1","schema":N}, then one line per record,
// {"user":{...}}, {"session":{...}}, {"device":{...}}, {"passkey":{...}},
// {"signing_key":{...}}.
// It holds password hashes, refresh keys and private signing keys: keep it
// as safe as the database. For a full copy of the database, use pg_dump.
// The export is spooled to a temporary file first, to announce its exact
// size.
func (p *Postgres) Backup(ctx context.Context, w io.Writer, size func(n int64)) (int64, error) {
	if err := storage.CtxErr(ctx); err != nil {
		return 0, err
	}
	spool, err := os.CreateTemp("", "guestauth-export-*")
	if err != nil {
		return 0, err
	}
	defer func() {
		spool.Close()
		os.Remove(spool.Name())
	}()
	err = pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		enc := json.NewEncoder(spool)
		if err := enc.Encode(map[string]any{"format": ExportFormat, "schema": SchemaVersion(), "source": p.desc}); err != nil {
			return err
		}
		for _, t := range []struct{ key, q string }{
			{"user", `SELECT data FROM guestauth_users ORDER BY id`},
			{"session", `SELECT data FROM guestauth_sessions ORDER BY id`},
			{"device", `SELECT data FROM guestauth_devices ORDER BY kid`},
			{"passkey", `SELECT data FROM guestauth_passkeys ORDER BY id`},
			{"signing_key", `SELECT data FROM guestauth_signing_keys ORDER BY created_ns, kid`},
		} {
			rows, err := tx.Query(ctx, t.q)
			if err != nil {
				return err
			}
			for rows.Next() {
				var raw []byte
				if err := rows.Scan(&raw); err != nil {
					rows.Close()
					return err
				}
				if err := enc.Encode(map[string]json.RawMessage{t.key: json.RawMessage(raw)}); err != nil {
					rows.Close()
					return err
				}
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, opErr(ctx, err)
	}
	n, err := spool.Seek(0, io.SeekCurrent)
	if err != nil {
		return 0, err
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	if size != nil {
		size(n)
	}
	written, err := io.Copy(ctxWriter{ctx, w}, spool)
	if err == nil && written != n {
		err = fmt.Errorf("export: wrote %d of %d bytes", written, n)
	}
	return written, err
}

type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(b)
}

// LockSigningKeys implements storage.Backend with a PostgreSQL advisory
// lock (scoped to the current schema), so that key generation and rotation
// happen on one node at a time: nodes starting together make one key.
func (p *Postgres) LockSigningKeys(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := storage.CtxErr(ctx); err != nil {
		return err
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return opErr(ctx, err)
	}
	defer conn.Release()
	const key = `hashtextextended('guestauth.keys:' || coalesce(current_schema(), ''), 0)`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+key+`)`); err != nil {
		return opErr(ctx, err)
	}
	defer func() {
		// A lost connection drops the lock with it.
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+key+`)`)
	}()
	return fn(ctx)
}

// TryLockSweep implements storage.Backend with a PostgreSQL advisory lock
// (scoped to the current schema) per name: periodic sweeps run on one node
// at a time.
func (p *Postgres) TryLockSweep(ctx context.Context, name string, fn func(ctx context.Context) error) (bool, error) {
	if err := storage.CtxErr(ctx); err != nil {
		return false, err
	}
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return false, opErr(ctx, err)
	}
	defer conn.Release()
	const key = `hashtextextended('guestauth.sweep.' || $1 || ':' || coalesce(current_schema(), ''), 0)`
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+key+`)`, name).Scan(&got); err != nil {
		return false, opErr(ctx, err)
	}
	if !got {
		return false, nil
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(`+key+`)`, name)
	}()
	return true, fn(ctx)
}

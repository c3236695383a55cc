package postgres

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Flow states live in guestauth_flows (migration 0005): the record as
// JSON, its expiry, and the time of its first take (spent_ns, 0 until
// then), kept in a column so a take is one UPDATE of one row.

// putFlow inserts a record, deleting up to 16 expired ones in the same
// statement (one round trip): each put adds one, so cleanup outpaces
// creation.
const putFlow = `WITH purge AS (
	DELETE FROM guestauth_flows WHERE hash IN (SELECT hash FROM guestauth_flows
		WHERE expires_ns <= $4 ORDER BY expires_ns LIMIT 16 FOR UPDATE SKIP LOCKED))
INSERT INTO guestauth_flows (hash, expires_ns, data) VALUES ($1, $2, $3)`

// PutFlowState implements storage.Backend.
func (p *Postgres) PutFlowState(ctx context.Context, kind, handle string, f model.FlowState) error {
	if err := storage.CheckFlowState(kind, handle, &f); err != nil {
		return invalid(err.Error())
	}
	f.Kind, f.SpentAt = kind, time.Time{}
	raw, err := json.Marshal(&f)
	if err != nil {
		return err
	}
	return p.once(ctx, func(ctx context.Context) error {
		_, err := p.pool.Exec(ctx, putFlow, storage.FlowKey(kind, handle), ns(f.ExpiresAt), raw, ns(f.CreatedAt))
		return err
	})
}

// readFlow decodes a row's record and its spent time.
func readFlow(raw []byte, spent int64) (*model.FlowState, error) {
	var f model.FlowState
	if err := storage.DecodeRecord(raw, &f); err != nil {
		return nil, invalid("flow state record: " + err.Error())
	}
	if spent != 0 {
		f.SpentAt = time.Unix(0, spent).UTC()
	}
	return &f, nil
}

// getFlow reads the live row of key at now (model.ErrNotFound if none).
func (p *Postgres) getFlow(ctx context.Context, key []byte, now time.Time) (*model.FlowState, error) {
	var raw []byte
	var spent int64
	err := p.pool.QueryRow(ctx, `SELECT data, spent_ns FROM guestauth_flows WHERE hash = $1 AND expires_ns > $2`, key, ns(now)).Scan(&raw, &spent)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, model.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return readFlow(raw, spent)
}

// GetFlowState implements storage.Backend.
func (p *Postgres) GetFlowState(ctx context.Context, kind, handle string, now time.Time) (*model.FlowState, error) {
	var f *model.FlowState
	err := p.read(ctx, func(ctx context.Context) error {
		var err error
		f, err = p.getFlow(ctx, storage.FlowKey(kind, handle), now)
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case !f.SpentAt.IsZero():
		return f, model.ErrSpent
	}
	return f, nil
}

// TakeFlowState implements storage.Backend: one UPDATE of an unspent live
// row. Concurrent takes queue on the row's lock, and each after the first
// re-reads the row, finds it spent and updates nothing, so exactly one
// wins; only a take that wins nothing reads the row again, to tell a
// replay (ErrSpent) from an unknown handle.
func (p *Postgres) TakeFlowState(ctx context.Context, kind, handle string, now time.Time) (*model.FlowState, error) {
	key := storage.FlowKey(kind, handle)
	var f *model.FlowState
	var spent bool
	err := p.once(ctx, func(ctx context.Context) error {
		f, spent = nil, false
		var raw []byte
		err := p.pool.QueryRow(ctx, `UPDATE guestauth_flows SET spent_ns = $2 WHERE hash = $1 AND expires_ns > $2 AND spent_ns = 0 RETURNING data`,
			key, ns(now)).Scan(&raw)
		if err == nil {
			f, err = readFlow(raw, ns(now))
			return err
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if f, err = p.getFlow(ctx, key, now); err == nil {
			spent = true
		}
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case spent:
		return f, model.ErrSpent
	}
	return f, nil
}

// RedeemFlowState implements storage.Backend: the UPDATE that takes the
// row and the session's statements are one transaction (the row is locked
// first, then the user, as PutSessionLimit locks it).
func (p *Postgres) RedeemFlowState(ctx context.Context, kind, handle string, now time.Time, keep int, start func(f *model.FlowState) (*model.Session, error)) (*model.FlowState, int, error) {
	key := storage.FlowKey(kind, handle)
	var f *model.FlowState
	var ended int
	taken := false
	err := p.write(ctx, nil, func(w *wtx) error {
		f, ended, taken = nil, 0, false
		var raw []byte
		err := w.QueryRow(w.ctx, `UPDATE guestauth_flows SET spent_ns = $2 WHERE hash = $1 AND expires_ns > $2 AND spent_ns = 0 RETURNING data`,
			key, ns(now)).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // spent or unknown: told apart below, outside the transaction
		}
		if err != nil {
			return err
		}
		if f, err = readFlow(raw, 0); err != nil {
			return err
		}
		sess, err := start(f)
		if err != nil {
			return userError{err}
		}
		f.SpentAt = time.Unix(0, ns(now)).UTC()
		taken = true
		ended, err = w.putSessionLimit(sess, keep)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if taken {
		return f, ended, nil
	}
	err = p.read(ctx, func(ctx context.Context) error {
		var err error
		f, err = p.getFlow(ctx, key, now)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	if !f.SpentAt.IsZero() {
		return f, 0, model.ErrSpent
	}
	// Unspent now, though the UPDATE found none: it expired or was taken
	// and is being rolled back meanwhile; either way this take got nothing.
	return nil, 0, model.ErrNotFound
}

// SetSigningKeyCert implements storage.Backend.
func (p *Postgres) SetSigningKeyCert(ctx context.Context, kid string, cert []byte) error {
	var has bool
	err := p.once(ctx, func(ctx context.Context) error {
		// One statement: the update happens only for a key without one;
		// the answer says whether the key exists and whether it had one.
		err := p.pool.QueryRow(ctx, `WITH cur AS (SELECT kid, coalesce(data->>'cert', '') <> '' AS has FROM guestauth_signing_keys WHERE kid = $1 FOR UPDATE),
			upd AS (UPDATE guestauth_signing_keys k SET data = jsonb_set(k.data, '{cert}', to_jsonb($2::text)) FROM cur WHERE k.kid = cur.kid AND NOT cur.has)
			SELECT has FROM cur`, kid, certText(cert)).Scan(&has)
		if errors.Is(err, pgx.ErrNoRows) {
			return model.ErrNotFound
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case has:
		return model.ErrExists
	}
	return nil
}

// certText is cert as encoding/json writes a []byte (standard base64), so
// the record reads back as AddSigningKey wrote it.
func certText(cert []byte) string { return base64.StdEncoding.EncodeToString(cert) }

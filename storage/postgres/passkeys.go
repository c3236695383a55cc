package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// AddPasskey implements storage.Backend: the user is locked, updated and
// saved with the new row, in one transaction.
func (p *Postgres) AddPasskey(ctx context.Context, pk *model.Passkey, fn func(u *model.User) error, ev storage.Events) (*model.User, error) {
	if pk.ID == "" || pk.UserID == "" || len(pk.Credential) == 0 {
		return nil, invalid("a passkey needs an id, a user and a credential")
	}
	raw, err := json.Marshal(pk)
	if err != nil {
		return nil, err
	}
	var out *model.User
	err = p.write(ctx, ev, func(w *wtx) error {
		old, err := w.lockUser(pk.UserID, false)
		if err != nil {
			return err
		}
		u, err := changedUser(old, fn)
		if err != nil {
			return err
		}
		u.Passkeys++
		// Checked here, not queued: a stored id must refuse before the
		// user is written.
		if _, err := w.Exec(w.ctx, `INSERT INTO guestauth_passkeys (id, user_id, created_ns, data) VALUES ($1, $2, $3, $4)`,
			pk.ID, pk.UserID, ns(pk.CreatedAt), raw); err != nil {
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

// GetPasskey implements storage.Backend.
func (p *Postgres) GetPasskey(ctx context.Context, id string) (*model.Passkey, error) {
	var pk model.Passkey
	if err := getJSON(ctx, p, &pk, `SELECT data FROM guestauth_passkeys WHERE id = $1`, id); err != nil {
		return nil, err
	}
	return &pk, nil
}

// ListPasskeys implements storage.Backend.
func (p *Postgres) ListPasskeys(ctx context.Context, userID string) ([]model.Passkey, error) {
	var out []model.Passkey
	err := p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, `SELECT data FROM guestauth_passkeys WHERE user_id = $1 ORDER BY created_ns, id`, userID)
		if err != nil {
			return err
		}
		out, err = collectJSON[model.Passkey](rows)
		return err
	})
	return out, err
}

// UpdatePasskey implements storage.Backend: fn runs once, on the locked row.
func (p *Postgres) UpdatePasskey(ctx context.Context, id string, fn func(pk *model.Passkey) error) (*model.Passkey, error) {
	var out *model.Passkey
	err := p.write(ctx, nil, func(w *wtx) error {
		var raw []byte
		if err := w.QueryRow(w.ctx, `SELECT data FROM guestauth_passkeys WHERE id = $1 FOR UPDATE`, id).Scan(&raw); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return model.ErrNotFound
			}
			return err
		}
		var old model.Passkey
		if err := storage.DecodeRecord(raw, &old); err != nil {
			return fmt.Errorf("passkey record %s: %w", id, err)
		}
		pk := old
		if err := fn(&pk); err != nil {
			return userError{err}
		}
		if pk.ID != old.ID || pk.UserID != old.UserID {
			return invalid("a passkey's id and user cannot change")
		}
		data, err := json.Marshal(&pk)
		if err != nil {
			return err
		}
		w.queue(`UPDATE guestauth_passkeys SET data = $2 WHERE id = $1`, id, data)
		out = &pk
		return nil
	})
	return out, err
}

// DeletePasskey implements storage.Backend: the user is locked first, so
// concurrent removals of one user's passkeys check one after the other.
func (p *Postgres) DeletePasskey(ctx context.Context, userID, id string, check func(u *model.User) error, ev storage.Events) error {
	return p.write(ctx, ev, func(w *wtx) error {
		return w.removeWayIn(userID, func(u *model.User) { u.Passkeys = max(u.Passkeys-1, 0) }, check,
			`DELETE FROM guestauth_passkeys WHERE id = $1 AND user_id = $2`, id, userID)
	})
}

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

// Identity links live in guestauth_identities (migration 0008), keyed by
// issuer and subject; the user's Identities count is written in the same
// transaction as the row.

// LinkIdentity implements storage.Backend: the user is locked first (as
// UpdateUser locks it), then the row inserted; a concurrent link of the
// same issuer and subject waits on the key and finds it taken.
func (p *Postgres) LinkIdentity(ctx context.Context, l model.IdentityLink, fn func(u *model.User) error, ev storage.Events) (*model.User, error) {
	if err := storage.CheckIdentityLink(&l); err != nil {
		return nil, invalid(err.Error())
	}
	l.LinkedAt = l.LinkedAt.UTC()
	raw, err := json.Marshal(&l)
	if err != nil {
		return nil, err
	}
	var out *model.User
	err = p.write(ctx, ev, func(w *wtx) error {
		out = nil
		old, err := w.lockUser(l.UserID, false)
		if err != nil {
			return err
		}
		var inserted bool
		err = w.QueryRow(w.ctx, `INSERT INTO guestauth_identities (issuer, subject, user_id, linked_ns, data) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT DO NOTHING RETURNING true`, l.Issuer, l.Subject, l.UserID, ns(l.LinkedAt), raw).Scan(&inserted)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("identity link: %w", model.ErrExists)
		}
		if err != nil {
			return err
		}
		u, err := changedUser(old, fn)
		if err != nil {
			return err
		}
		u.Identities++
		if err := w.saveUser(old, u); err != nil {
			return err
		}
		out = u
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// GetIdentityLink implements storage.Backend.
func (p *Postgres) GetIdentityLink(ctx context.Context, issuer, subject string) (*model.IdentityLink, error) {
	var l model.IdentityLink
	err := p.read(ctx, func(ctx context.Context) error {
		var raw []byte
		err := p.pool.QueryRow(ctx, `SELECT data FROM guestauth_identities WHERE issuer = $1 AND subject = $2`, issuer, subject).Scan(&raw)
		if errors.Is(err, pgx.ErrNoRows) {
			return model.ErrNotFound
		}
		if err != nil {
			return err
		}
		return storage.DecodeRecord(raw, &l)
	})
	if err != nil {
		return nil, err
	}
	return &l, nil
}

// ListIdentityLinks implements storage.Backend.
func (p *Postgres) ListIdentityLinks(ctx context.Context, userID string) ([]model.IdentityLink, error) {
	var out []model.IdentityLink
	err := p.read(ctx, func(ctx context.Context) error {
		rows, err := p.pool.Query(ctx, `SELECT data FROM guestauth_identities WHERE user_id = $1 ORDER BY linked_ns, issuer, subject`, userID)
		if err != nil {
			return err
		}
		out, err = collectJSON[model.IdentityLink](rows)
		return err
	})
	return out, err
}

// UnlinkIdentity implements storage.Backend.
func (p *Postgres) UnlinkIdentity(ctx context.Context, userID, issuer, subject string, allow func(u *model.User) error, ev storage.Events) error {
	return p.write(ctx, ev, func(w *wtx) error {
		return w.removeWayIn(userID, func(u *model.User) { u.Identities = max(u.Identities-1, 0) }, allow,
			`DELETE FROM guestauth_identities WHERE issuer = $1 AND subject = $2 AND user_id = $3`, issuer, subject, userID)
	})
}

// removeWayIn deletes one of a user's ways to sign in (a provider link, a
// passkey) by query, with the user locked first so concurrent removals
// check one after the other; dec counts it off the user, and allow may
// refuse the result (the last way in), undoing the delete.
func (w *wtx) removeWayIn(userID string, dec func(u *model.User), allow func(u *model.User) error, query string, args ...any) error {
	old, err := w.lockUser(userID, false)
	if err != nil {
		return err
	}
	tag, err := w.Exec(w.ctx, query, args...)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return model.ErrNotFound
	}
	u := *old
	dec(&u)
	if allow != nil {
		if err := allow(&u); err != nil {
			return userError{err}
		}
	}
	return w.saveUser(old, &u)
}

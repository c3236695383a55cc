package bolt

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

var (
	bucketPasskeys     = []byte("passkeys")      // credential id -> model.Passkey JSON
	bucketUserPasskeys = []byte("user_passkeys") // user id + "/" + credential id -> ""
)

func userPasskeyKey(userID, id string) []byte { return []byte(userID + "/" + id) }

// AddPasskey implements storage.Backend.
func (b *Store) AddPasskey(ctx context.Context, p *model.Passkey, fn func(u *model.User) error, ev storage.Events) (*model.User, error) {
	if p.ID == "" || p.UserID == "" || len(p.Credential) == 0 {
		return nil, errors.New("a passkey needs an id, a user and a credential")
	}
	var out *model.User
	var memo memo[model.User]
	count := func(u *model.User) error {
		if fn != nil {
			if err := fn(u); err != nil {
				return err
			}
		}
		u.Passkeys++
		return nil
	}
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		pks := tx.Bucket(bucketPasskeys)
		if tx.Bucket(bucketUsers).Get([]byte(p.UserID)) == nil {
			return model.ErrNotFound
		}
		if pks.Get([]byte(p.ID)) != nil {
			return fmt.Errorf("passkey %s: %w", p.ID, model.ErrExists)
		}
		u, err := b.updateUser(tx, p.UserID, &memo, count)
		if err != nil {
			return err
		}
		if err := putJSON(pks, p.ID, p); err != nil {
			return err
		}
		if err := tx.Bucket(bucketUserPasskeys).Put(userPasskeyKey(p.UserID, p.ID), nil); err != nil {
			return err
		}
		out = u
		return storeEvents(tx, ev, storage.TxResult{})
	})
	return out, err
}

// GetPasskey implements storage.Backend.
func (b *Store) GetPasskey(ctx context.Context, id string) (*model.Passkey, error) {
	var p model.Passkey
	if err := b.view(ctx, func(tx *bbolt.Tx) error { return getJSON(tx.Bucket(bucketPasskeys), id, &p) }); err != nil {
		return nil, err
	}
	return &p, nil
}

// ListPasskeys implements storage.Backend.
func (b *Store) ListPasskeys(ctx context.Context, userID string) ([]model.Passkey, error) {
	var out []model.Passkey
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		out = out[:0]
		prefix := userPasskeyKey(userID, "")
		c := tx.Bucket(bucketUserPasskeys).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var p model.Passkey
			if err := getJSON(tx.Bucket(bucketPasskeys), string(k[len(prefix):]), &p); err != nil {
				return fmt.Errorf("passkey index %s: %w", k, err)
			}
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b model.Passkey) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// UpdatePasskey implements storage.Backend.
func (b *Store) UpdatePasskey(ctx context.Context, id string, fn func(p *model.Passkey) error) (*model.Passkey, error) {
	var out *model.Passkey
	var memo memo[model.Passkey]
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		pks := tx.Bucket(bucketPasskeys)
		raw := pks.Get([]byte(id))
		if raw == nil {
			return model.ErrNotFound
		}
		var old model.Passkey
		if err := storage.DecodeRecord(raw, &old); err != nil {
			return err
		}
		p, err := memo.apply(raw, old, fn)
		if err != nil {
			return err
		}
		if p.ID != old.ID || p.UserID != old.UserID {
			return errors.New("a passkey's id and user cannot change")
		}
		if err := putJSON(pks, id, &p); err != nil {
			return err
		}
		out = &p
		return nil
	})
	return out, err
}

// DeletePasskey implements storage.Backend.
func (b *Store) DeletePasskey(ctx context.Context, userID, id string, check func(u *model.User) error, ev storage.Events) error {
	var memo memo[model.User]
	count := func(u *model.User) error {
		u.Passkeys = max(u.Passkeys-1, 0)
		if check != nil {
			return check(u)
		}
		return nil
	}
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		idx := tx.Bucket(bucketUserPasskeys)
		key := userPasskeyKey(userID, id)
		if idx.Get(key) == nil {
			return model.ErrNotFound
		}
		if _, err := b.updateUser(tx, userID, &memo, count); err != nil {
			return err
		}
		if err := idx.Delete(key); err != nil {
			return err
		}
		if err := tx.Bucket(bucketPasskeys).Delete([]byte(id)); err != nil {
			return err
		}
		return storeEvents(tx, ev, storage.TxResult{})
	})
}

// deleteUserPasskeys deletes every passkey of a user being deleted.
func deleteUserPasskeys(tx *bbolt.Tx, userID string) error {
	return deleteByUser(tx.Bucket(bucketPasskeys), tx.Bucket(bucketUserPasskeys), userID)
}

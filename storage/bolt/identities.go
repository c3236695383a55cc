package bolt

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Identity links live in two buckets created on first write (older files
// need no migration): the links by issuer and subject, and an index of
// each user's links.
var (
	bucketIdentities     = []byte("identities")      // storage.IdentityKey -> model.IdentityLink JSON
	bucketUserIdentities = []byte("user_identities") // user id + "/" + storage.IdentityKey -> ""
)

func userIdentityKey(userID, key string) []byte { return []byte(userID + "/" + key) }

// LinkIdentity implements storage.Backend.
func (b *Store) LinkIdentity(ctx context.Context, l model.IdentityLink, fn func(u *model.User) error, ev storage.Events) (*model.User, error) {
	if err := storage.CheckIdentityLink(&l); err != nil {
		return nil, err
	}
	l.LinkedAt = l.LinkedAt.UTC()
	key := storage.IdentityKey(l.Issuer, l.Subject)
	var out *model.User
	var memo memo[model.User]
	err := b.batch(ctx, func(tx *bbolt.Tx) error {
		out = nil
		links, err := tx.CreateBucketIfNotExists(bucketIdentities)
		if err != nil {
			return err
		}
		index, err := tx.CreateBucketIfNotExists(bucketUserIdentities)
		if err != nil {
			return err
		}
		if tx.Bucket(bucketUsers).Get([]byte(l.UserID)) == nil {
			return model.ErrNotFound
		}
		if links.Get([]byte(key)) != nil {
			return fmt.Errorf("identity link: %w", model.ErrExists)
		}
		u, err := b.updateUser(tx, l.UserID, &memo, func(u *model.User) error {
			if fn != nil {
				if err := fn(u); err != nil {
					return err
				}
			}
			u.Identities++
			return nil
		})
		if err != nil {
			return err
		}
		if err := putJSON(links, key, &l); err != nil {
			return err
		}
		if err := index.Put(userIdentityKey(l.UserID, key), nil); err != nil {
			return err
		}
		out = u
		return storeEvents(tx, ev, storage.TxResult{})
	})
	return out, err
}

// GetIdentityLink implements storage.Backend.
func (b *Store) GetIdentityLink(ctx context.Context, issuer, subject string) (*model.IdentityLink, error) {
	var l model.IdentityLink
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		links := tx.Bucket(bucketIdentities)
		if links == nil {
			return model.ErrNotFound
		}
		return getJSON(links, storage.IdentityKey(issuer, subject), &l)
	})
	if err != nil {
		return nil, err
	}
	return &l, nil
}

// ListIdentityLinks implements storage.Backend.
func (b *Store) ListIdentityLinks(ctx context.Context, userID string) ([]model.IdentityLink, error) {
	var out []model.IdentityLink
	err := b.view(ctx, func(tx *bbolt.Tx) error {
		out = nil
		links, index := tx.Bucket(bucketIdentities), tx.Bucket(bucketUserIdentities)
		if links == nil || index == nil {
			return nil
		}
		prefix := []byte(userID + "/")
		c := index.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			var l model.IdentityLink
			if err := getJSON(links, string(k[len(prefix):]), &l); err != nil {
				return fmt.Errorf("identity link of user %s: %w", userID, err)
			}
			out = append(out, l)
		}
		return nil
	})
	slices.SortStableFunc(out, func(a, b model.IdentityLink) int { return a.LinkedAt.Compare(b.LinkedAt) })
	return out, err
}

// UnlinkIdentity implements storage.Backend.
func (b *Store) UnlinkIdentity(ctx context.Context, userID, issuer, subject string, allow func(u *model.User) error, ev storage.Events) error {
	key := storage.IdentityKey(issuer, subject)
	var memo memo[model.User]
	return b.batch(ctx, func(tx *bbolt.Tx) error {
		links, index := tx.Bucket(bucketIdentities), tx.Bucket(bucketUserIdentities)
		if links == nil || index == nil || index.Get(userIdentityKey(userID, key)) == nil {
			return model.ErrNotFound
		}
		if _, err := b.updateUser(tx, userID, &memo, func(u *model.User) error {
			u.Identities = max(u.Identities-1, 0)
			if allow != nil {
				return allow(u)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := links.Delete([]byte(key)); err != nil {
			return err
		}
		if err := index.Delete(userIdentityKey(userID, key)); err != nil {
			return err
		}
		return storeEvents(tx, ev, storage.TxResult{})
	})
}

// deleteUserLinks deletes a deleted user's links (its record is saved by
// the caller).
func deleteUserLinks(tx *bbolt.Tx, userID string) error {
	return deleteByUser(tx.Bucket(bucketIdentities), tx.Bucket(bucketUserIdentities), userID)
}

// deleteByUser deletes a user's records from records and from index, whose
// keys are userID + "/" + the record's key (links and passkeys both).
func deleteByUser(records, index *bbolt.Bucket, userID string) error {
	if records == nil || index == nil {
		return nil
	}
	prefix := []byte(userID + "/")
	var keys [][]byte
	c := index.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := records.Delete(k[len(prefix):]); err != nil {
			return err
		}
		if err := index.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

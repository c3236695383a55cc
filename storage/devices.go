package storage

import (
	"context"

	bolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// GetDevice implements Store.
func (b *Bolt) GetDevice(ctx context.Context, kid string) (*model.Device, error) {
	var d model.Device
	err := b.view(ctx, func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bucketDevices), kid, &d) })
	if err != nil {
		return nil, err
	}
	return &d, nil
}

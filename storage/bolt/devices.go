package bolt

import (
	"context"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// GetDevice implements storage.Backend.
func (b *Store) GetDevice(ctx context.Context, kid string) (*model.Device, error) {
	var d model.Device
	err := b.view(ctx, func(tx *bbolt.Tx) error { return getJSON(tx.Bucket(bucketDevices), kid, &d) })
	if err != nil {
		return nil, err
	}
	return &d, nil
}

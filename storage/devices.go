package storage

import bolt "go.etcd.io/bbolt"

// GetDevice implements Store.
func (b *Bolt) GetDevice(kid string) (*Device, error) {
	var d Device
	err := b.db.View(func(tx *bolt.Tx) error { return getJSON(tx.Bucket(bucketDevices), kid, &d) })
	if err != nil {
		return nil, err
	}
	return &d, nil
}

package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/tokens"
)

// storePool shares one open bbolt file (and its keyring) between every
// config that names it. A reload provisions the new config before cleaning
// up the old one, so the file stays open across reloads and is never reopened
// (bbolt's exclusive lock would make a reopen wait on ourselves).
var storePool = caddy.NewUsagePool()

type sharedStore struct {
	store *storage.Bolt
	keys  *tokens.Keyring
}

func (s *sharedStore) Destruct() error { return s.store.Close() }

// lockTimeout bounds the wait when another process holds the file.
const lockTimeout = 3 * time.Second

func openShared(path string) (*sharedStore, error) {
	v, _, err := storePool.LoadOrNew(path, func() (caddy.Destructor, error) {
		st, err := storage.OpenBolt(path, storage.Options{LockTimeout: lockTimeout})
		if err != nil {
			return nil, err
		}
		keys, err := tokens.LoadKeyring(st)
		if err != nil {
			st.Close()
			return nil, err
		}
		return &sharedStore{store: st, keys: keys}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*sharedStore), nil
}

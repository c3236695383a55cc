package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/accounts"

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
	stop  chan struct{}
	done  chan struct{}
}

// Destruct stops the sweeper, then closes the file.
func (s *sharedStore) Destruct() error {
	close(s.stop)
	<-s.done
	return s.store.Close()
}

// Session sweeping: ended sessions are deleted every sweepInterval, in
// transactions of at most sweepBatch sessions so writers never wait long.
const (
	sweepInterval = time.Minute
	sweepBatch    = 500
)

// sweep runs for the life of the open file: exactly one per store.
func (s *sharedStore) sweep() {
	defer close(s.done)
	log := caddy.Log().Named("guest_auth.sweeper")
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		n, err := accounts.SweepSessions(s.store, time.Now, sweepBatch)
		if err != nil {
			log.Error("sweeping sessions", zap.Error(err))
		} else if n > 0 {
			log.Info("sessions.expired", zap.Int("count", n))
		}
	}
}

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
		sh := &sharedStore{store: st, keys: keys, stop: make(chan struct{}), done: make(chan struct{})}
		go sh.sweep()
		return sh, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*sharedStore), nil
}

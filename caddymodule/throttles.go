package caddymodule

import (
	"fmt"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// throttlePool keeps the limits' token buckets (sign-in budgets, guest
// creation, challenges, name changes) across config reloads, as
// caddy-ratelimit does: a reload provisions the new config before cleaning
// up the old one, so a bucket in use is handed over, not rebuilt, and
// sign-in failures stay counted. A bucket is keyed by the store, the
// issuer, the limit's name and its burst and interval: a changed limit
// starts from a fresh bucket, and sites sharing a store but not an issuer
// keep budgets of their own.
var throttlePool = caddy.NewUsagePool()

type pooledThrottle struct{ *accounts.Throttle }

func (pooledThrottle) Destruct() error { return nil }

// pooledLock is the admission lock of the buckets of one store and issuer
// (accounts.Config.AdmitLock), pooled beside them: configs sharing the
// buckets (a reload's overlap, two handlers of one site) share the lock,
// so a password attempt's admission stays all-or-nothing across them.
type pooledLock struct{ *sync.Mutex }

func (pooledLock) Destruct() error { return nil }

func admitLockKey(poolKey, issuer string) string {
	return fmt.Sprintf("%s\x00%s\x00admission", poolKey, issuer)
}

// admitLock is accounts.Config.AdmitLock for g: the pooled lock of its
// buckets, remembered for Cleanup like them.
func (g *GuestAuth) admitLock() *sync.Mutex {
	key := admitLockKey(g.poolKey, g.issuer)
	v, _ := throttlePool.LoadOrStore(key, pooledLock{new(sync.Mutex)})
	g.throttleKeys = append(g.throttleKeys, key)
	return v.(pooledLock).Mutex
}

func throttleKey(poolKey, issuer, name string, l accounts.Limit) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%d/%d", poolKey, issuer, name, l.Burst, l.Interval)
}

// throttle is accounts.Config.Throttles for g: it takes the pooled bucket
// for the limit, or makes it, and remembers the key for Cleanup.
func (g *GuestAuth) throttle(name string, l accounts.Limit) *accounts.Throttle {
	t := accounts.NewThrottle(l, g.now)
	if t == nil { // disabled: nothing to keep
		return nil
	}
	key := throttleKey(g.poolKey, g.issuer, name, l)
	v, _ := throttlePool.LoadOrStore(key, pooledThrottle{t})
	g.throttleKeys = append(g.throttleKeys, key)
	return v.(pooledThrottle).Throttle
}

// releaseThrottles gives back this config's use of its buckets; a bucket no
// config uses any more is dropped.
func (g *GuestAuth) releaseThrottles() {
	for _, k := range g.throttleKeys {
		_, _ = throttlePool.Delete(k)
	}
	g.throttleKeys = nil
}

// sharedLimit is accounts.Config.SharedLimits for g: on a store several
// processes share (storage.Backend.Shared: PostgreSQL), the limits that
// must hold across nodes — an account's guess and hash budgets, the global
// guest rate — are kept in the store, so every Caddy on the database draws
// on one budget. They are named by the issuer and the limit, as the pooled
// buckets are, so sites sharing a store but not an issuer keep their own.
// A store this process alone uses (bbolt) keeps them in the pooled buckets
// above: one process is the whole budget already, and a try costs no
// store write (a bbolt write is an fsync'd commit).
func (g *GuestAuth) sharedLimit(name string, l accounts.Limit) accounts.Limiter {
	if !g.shared.store.Shared() {
		return nil
	}
	return accounts.StoreLimit(g.shared.store, g.issuer+" "+name, l)
}

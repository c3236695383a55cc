//go:build linux

package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"os"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// floors are the costs guest_auth cannot avoid, measured in this process
// in every round, so a round's floor sees the same machine as the round: two signatures per guest (access and ID token),
// one verification per cache miss, one argon2id hash per password check.
type floors struct {
	sign2  map[string]time.Duration // alg -> two signatures
	verify map[string]time.Duration // alg -> one verification
	argon2 time.Duration
}

type floorKeys struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	ed  ed25519.PrivateKey
	msg [32]byte
	rs  []byte
	es  []byte
	eds []byte
}

func newFloorKeys() (*floorKeys, error) {
	var k floorKeys
	var err error
	if k.rsa, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, err
	}
	if _, k.ed, err = ed25519.GenerateKey(rand.Reader); err != nil {
		return nil, err
	}
	k.msg = sha256.Sum256([]byte("header.payload"))
	if k.rs, err = rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA256, k.msg[:]); err != nil {
		return nil, err
	}
	if k.es, err = ecdsa.SignASN1(rand.Reader, k.ec, k.msg[:]); err != nil {
		return nil, err
	}
	k.eds = ed25519.Sign(k.ed, k.msg[:])
	return &k, nil
}

// perOp runs fn once to warm up, then n times, and returns the CPU per
// call: the steady state of the computation itself. It reads this
// process's CPU clock, not the thread's: argon2 works in goroutines of its
// own. Nothing else runs in this process between rounds.
func perOp(n int, fn func()) time.Duration {
	fn()
	t0, _ := processCPU(os.Getpid())
	for range n {
		fn()
	}
	t1, _ := processCPU(os.Getpid())
	return (t1 - t0) / time.Duration(n)
}

func (k *floorKeys) measure(withArgon bool) floors {
	f := floors{sign2: map[string]time.Duration{}, verify: map[string]time.Duration{}}
	f.sign2["RS256"] = 2 * perOp(40, func() { _, _ = rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA256, k.msg[:]) })
	f.sign2["ES256"] = 2 * perOp(200, func() { _, _ = ecdsa.SignASN1(rand.Reader, k.ec, k.msg[:]) })
	f.sign2["EdDSA"] = 2 * perOp(200, func() { ed25519.Sign(k.ed, k.msg[:]) })
	f.verify["RS256"] = perOp(200, func() { _ = rsa.VerifyPKCS1v15(&k.rsa.PublicKey, crypto.SHA256, k.msg[:], k.rs) })
	f.verify["ES256"] = perOp(200, func() { ecdsa.VerifyASN1(&k.ec.PublicKey, k.msg[:], k.es) })
	f.verify["EdDSA"] = perOp(200, func() { ed25519.Verify(k.ed.Public().(ed25519.PublicKey), k.msg[:], k.eds) })
	if withArgon {
		p := accounts.DefaultArgon2
		f.argon2 = perOp(3, func() { argon2.IDKey([]byte("password"), k.msg[:16], p.Time, p.MemoryKiB, p.Threads, 32) })
	}
	return f
}

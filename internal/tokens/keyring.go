// Package tokens signs and verifies guestauth's JWTs.
//
// A Keyring holds the signing keys persisted in the store: one active private
// key per algorithm, generated on first use, plus the public keys of all
// stored keys for verification and for the JWKS document. Keys are converted
// from JWK to raw crypto keys once, when loaded, never per token.
package tokens

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Supported signing algorithms.
var Algorithms = []jwa.SignatureAlgorithm{jwa.RS256, jwa.ES256, jwa.EdDSA}

// ParseAlgorithm checks that name is one of Algorithms.
func ParseAlgorithm(name string) (jwa.SignatureAlgorithm, error) {
	for _, a := range Algorithms {
		if string(a) == name {
			return a, nil
		}
	}
	return "", fmt.Errorf("unsupported signing algorithm %q (use RS256, ES256 or EdDSA)", name)
}

// KeyStore persists signing keys; every storage backend is one. Its key
// lock (LockSigningKeys) is held by one process at a time of all those
// sharing the store: EnsureSigner, Rotate and RetireKeys run under it, so
// instances starting together generate one key for the cluster, not one
// each.
type KeyStore interface {
	SigningKeys(ctx context.Context) ([]model.SigningKey, error)
	AddSigningKey(ctx context.Context, k model.SigningKey) error
	DeleteSigningKey(ctx context.Context, kid string) error
	SetSigningKeyCert(ctx context.Context, kid string, cert []byte) error
	LockSigningKeys(ctx context.Context, fn func(ctx context.Context) error) error
}

type signingKey struct {
	kid string
	alg jwa.SignatureAlgorithm
	raw crypto.Signer
	// headers holds the encoded protected header of each token type
	// signed with this key (see header).
	headers sync.Map
}

// keyState is immutable once published; changes replace it whole.
type keyState struct {
	signers map[jwa.SignatureAlgorithm]*signingKey // newest key of each alg
	verify  map[string]Key                         // by kid
	jwks    []byte
	// uncertified: a stored key has no certificate yet (see EnsureCerts)
	uncertified bool
}

// Keyring is safe for concurrent use. Keys are only ever added (by
// EnsureSigner and Rotate, here or in another process sharing the store):
// a token naming a kid the keyring does not know makes it reload the
// stored keys (at most once per keyReloadGap), and the signer follows the
// store's newest key within keyRefreshAge.
type Keyring struct {
	store KeyStore
	mu    sync.Mutex // serializes key creation
	state atomic.Pointer[keyState]

	loadMu     sync.Mutex   // reloads publish in the order they read
	reloadMu   sync.Mutex   // one reload for an unknown kid at a time
	lastReload atomic.Int64 // any load
	lastLookup atomic.Int64 // a load for an unknown kid
	refreshing atomic.Bool
}

// keyReloadGap bounds the reloads that tokens with unknown kids cause (a
// forged token may name any kid); keyRefreshAge is how old the loaded keys
// may get before signing reloads them in the background, so a key rotated
// by another process signs here too.
const (
	keyReloadGap  = time.Second
	keyRefreshAge = 30 * time.Second
)

// lookup finds the verification key of kid, reloading the stored keys once
// (per keyReloadGap) when kid is unknown: another process may have added it.
func (k *Keyring) lookup(kid string) (Key, bool) {
	if key, ok := k.state.Load().verify[kid]; ok {
		return key, true
	}
	k.reloadMu.Lock()
	defer k.reloadMu.Unlock()
	if key, ok := k.state.Load().verify[kid]; ok { // another caller reloaded
		return key, true
	}
	if time.Since(time.Unix(0, k.lastLookup.Load())) < keyReloadGap {
		return Key{}, false
	}
	k.lastLookup.Store(time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if k.reload(ctx) != nil {
		return Key{}, false
	}
	key, ok := k.state.Load().verify[kid]
	return key, ok
}

// Reload reads the stored keys again.
func (k *Keyring) Reload(ctx context.Context) error { return k.reload(ctx) }

// locked runs fn under the store's key lock.
func (k *Keyring) locked(ctx context.Context, fn func(ctx context.Context) error) error {
	return k.store.LockSigningKeys(ctx, fn)
}

// LoadKeyring reads every stored key.
func LoadKeyring(ctx context.Context, store KeyStore) (*Keyring, error) {
	k := &Keyring{store: store}
	if err := k.reload(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *Keyring) reload(ctx context.Context) error {
	k.loadMu.Lock()
	defer k.loadMu.Unlock()
	stored, err := k.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("loading signing keys: %w", err)
	}
	k.lastReload.Store(time.Now().UnixNano())
	st := &keyState{signers: map[jwa.SignatureAlgorithm]*signingKey{}, verify: map[string]Key{}}
	set := jwk.NewSet()
	for _, sk := range stored { // oldest first, so the newest of each alg wins
		alg, err := ParseAlgorithm(sk.Alg)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", sk.KID, err)
		}
		signer, err := privateKey(sk)
		if err != nil {
			return err
		}
		if r, ok := signer.(*rsa.PrivateKey); ok {
			r.Precompute()
		}
		st.signers[alg] = &signingKey{kid: sk.KID, alg: alg, raw: signer}
		st.verify[sk.KID] = Key{Alg: alg, Public: signer.Public()}
		pub, err := jwk.FromRaw(signer.Public())
		if err != nil {
			return err
		}
		for name, v := range map[string]any{jwk.KeyIDKey: sk.KID, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: "sig"} {
			if err := pub.Set(name, v); err != nil {
				return err
			}
		}
		if len(sk.Cert) > 0 {
			if err := setCertificate(pub, sk.Cert); err != nil {
				return fmt.Errorf("signing key %s: %w", sk.KID, err)
			}
		} else {
			st.uncertified = true
		}
		if err := set.AddKey(pub); err != nil {
			return err
		}
	}
	if st.jwks, err = json.Marshal(set); err != nil {
		return err
	}
	k.state.Store(st)
	return nil
}

// privateKey is the private key of a stored signing key.
func privateKey(sk model.SigningKey) (crypto.Signer, error) {
	priv, err := jwk.ParseKey(sk.JWK)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", sk.KID, err)
	}
	var raw any
	if err := priv.Raw(&raw); err != nil {
		return nil, fmt.Errorf("signing key %s: %w", sk.KID, err)
	}
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("signing key %s: %T is not a private key", sk.KID, raw)
	}
	return signer, nil
}

// JWKS is the public key set as JSON (RFC 7517).
func (k *Keyring) JWKS() []byte { return k.state.Load().jwks }

// EnsureSigner makes sure a signing key exists for alg, generating and
// persisting one if needed. Call it at provisioning time, not per request.
//
// It also gives the stored keys without a certificate one (EnsureCerts).
func (k *Keyring) EnsureSigner(ctx context.Context, alg jwa.SignatureAlgorithm) error {
	if k.state.Load().signers[alg] != nil {
		return k.EnsureCerts(ctx)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state.Load().signers[alg] != nil {
		if !k.state.Load().uncertified {
			return nil
		}
		return k.locked(ctx, k.ensureCerts)
	}
	return k.locked(ctx, func(ctx context.Context) error {
		if err := k.reload(ctx); err != nil { // another process may have made one
			return err
		}
		if k.state.Load().signers[alg] == nil {
			if _, err := k.addKey(ctx, alg); err != nil {
				return err
			}
		}
		return k.ensureCerts(ctx)
	})
}

// Rotate makes a new signing key for alg, which signs from now on (in
// other processes sharing the store, within keyRefreshAge); the older keys
// still verify the tokens they signed. It returns the new key's id.
func (k *Keyring) Rotate(ctx context.Context, alg jwa.SignatureAlgorithm) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var kid string
	err := k.locked(ctx, func(ctx context.Context) error {
		var err error
		kid, err = k.addKey(ctx, alg)
		return err
	})
	return kid, err
}

// KeyRefreshAge is how long a process may keep signing with a key after
// another process sharing the store rotated it: the age at which a
// keyring reloads its keys.
const KeyRefreshAge = keyRefreshAge

// RetireKeys deletes from the store, and so from the JWKS, each key that
// no valid token can name any more: a key of an algorithm with a newer key
// (its successor, which retired it when stored), once now is past the
// successor's creation + KeyRefreshAge (other processes may sign with the
// old key until they reload) + maxLifetime, which must be the longest
// lifetime of any token the keys sign plus the clock skew verifiers allow.
// The newest key of each algorithm is never deleted. It runs under the
// store's key lock, and returns the ids of the keys it deleted.
func (k *Keyring) RetireKeys(ctx context.Context, now time.Time, maxLifetime time.Duration) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var retired []string
	err := k.locked(ctx, func(ctx context.Context) error {
		stored, err := k.store.SigningKeys(ctx)
		if err != nil {
			return fmt.Errorf("loading signing keys: %w", err)
		}
		// Oldest first: each key's successor is the next key of its alg.
		byAlg := map[string][]model.SigningKey{}
		for _, sk := range stored {
			byAlg[sk.Alg] = append(byAlg[sk.Alg], sk)
		}
		for _, keys := range byAlg {
			for i := 0; i+1 < len(keys); i++ {
				if now.Before(keys[i+1].CreatedAt.Add(keyRefreshAge + maxLifetime)) {
					continue
				}
				if err := k.store.DeleteSigningKey(ctx, keys[i].KID); err != nil {
					return fmt.Errorf("deleting signing key %s: %w", keys[i].KID, err)
				}
				retired = append(retired, keys[i].KID)
			}
		}
		if len(retired) > 0 {
			if err := k.reload(ctx); err != nil {
				return err
			}
		}
		// A key another process of an older build stored lacks a
		// certificate: it gets one here.
		if k.state.Load().uncertified {
			return k.ensureCerts(ctx)
		}
		return nil
	})
	return retired, err
}

// SignerKID is the id of the key that signs alg now ("" if none).
func (k *Keyring) SignerKID(alg jwa.SignatureAlgorithm) string {
	if s := k.state.Load().signers[alg]; s != nil {
		return s.kid
	}
	return ""
}

// addKey generates, stores and loads a key for alg. A key made in the
// same nanosecond as the previous newest still sorts after it: the store
// orders by creation time.
func (k *Keyring) addKey(ctx context.Context, alg jwa.SignatureAlgorithm) (string, error) {
	priv, err := generate(alg)
	if err != nil {
		return "", err
	}
	jk, err := jwk.FromRaw(priv)
	if err != nil {
		return "", err
	}
	tp, err := jk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	kid := b64.EncodeToString(tp)
	raw, err := json.Marshal(jk)
	if err != nil {
		return "", err
	}
	created := time.Now().UTC()
	der, err := selfSigned(priv, kid, created)
	if err != nil {
		return "", err
	}
	if err := k.store.AddSigningKey(ctx, model.SigningKey{KID: kid, Alg: string(alg), CreatedAt: created, JWK: raw, Cert: der}); err != nil {
		return "", fmt.Errorf("persisting signing key: %w", err)
	}
	return kid, k.reload(ctx)
}

func generate(alg jwa.SignatureAlgorithm) (crypto.Signer, error) {
	switch alg {
	case jwa.RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	case jwa.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jwa.EdDSA:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		return priv, err
	}
	return nil, fmt.Errorf("unsupported signing algorithm %q", alg)
}

var errNoSigner = errors.New("no signing key for this algorithm")

func (k *Keyring) signer(alg jwa.SignatureAlgorithm) (*signingKey, error) {
	if time.Since(time.Unix(0, k.lastReload.Load())) > keyRefreshAge && k.refreshing.CompareAndSwap(false, true) {
		go func() { // the request signs with the key it has meanwhile
			defer k.refreshing.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = k.reload(ctx)
		}()
	}
	if s := k.state.Load().signers[alg]; s != nil {
		return s, nil
	}
	return nil, errNoSigner
}

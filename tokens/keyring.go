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

	"github.com/guestauth/caddy-guestauth/storage"
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

// KeyStore persists signing keys.
type KeyStore interface {
	SigningKeys(ctx context.Context) ([]storage.SigningKey, error)
	AddSigningKey(ctx context.Context, k storage.SigningKey) error
}

type signingKey struct {
	kid string
	alg jwa.SignatureAlgorithm
	raw crypto.Signer
}

type verifyKey struct {
	alg jwa.SignatureAlgorithm
	raw crypto.PublicKey
}

// keyState is immutable once published; changes replace it whole.
type keyState struct {
	signers map[jwa.SignatureAlgorithm]*signingKey // newest key of each alg
	verify  map[string]verifyKey                   // by kid
	jwks    []byte
}

// Keyring is safe for concurrent use.
type Keyring struct {
	store KeyStore
	mu    sync.Mutex // serializes key creation
	state atomic.Pointer[keyState]
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
	stored, err := k.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("loading signing keys: %w", err)
	}
	st := &keyState{signers: map[jwa.SignatureAlgorithm]*signingKey{}, verify: map[string]verifyKey{}}
	set := jwk.NewSet()
	for _, sk := range stored { // oldest first, so the newest of each alg wins
		priv, err := jwk.ParseKey(sk.JWK)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", sk.KID, err)
		}
		alg, err := ParseAlgorithm(sk.Alg)
		if err != nil {
			return fmt.Errorf("signing key %s: %w", sk.KID, err)
		}
		var raw any
		if err := priv.Raw(&raw); err != nil {
			return fmt.Errorf("signing key %s: %w", sk.KID, err)
		}
		signer, ok := raw.(crypto.Signer)
		if !ok {
			return fmt.Errorf("signing key %s: %T is not a private key", sk.KID, raw)
		}
		if r, ok := signer.(*rsa.PrivateKey); ok {
			r.Precompute()
		}
		st.signers[alg] = &signingKey{kid: sk.KID, alg: alg, raw: signer}
		st.verify[sk.KID] = verifyKey{alg: alg, raw: signer.Public()}
		pub, err := jwk.PublicKeyOf(priv)
		if err != nil {
			return err
		}
		for name, v := range map[string]any{jwk.KeyIDKey: sk.KID, jwk.AlgorithmKey: alg, jwk.KeyUsageKey: "sig"} {
			if err := pub.Set(name, v); err != nil {
				return err
			}
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

// JWKS is the public key set as JSON (RFC 7517).
func (k *Keyring) JWKS() []byte { return k.state.Load().jwks }

// EnsureSigner makes sure a signing key exists for alg, generating and
// persisting one if needed. Call it at provisioning time, not per request.
func (k *Keyring) EnsureSigner(ctx context.Context, alg jwa.SignatureAlgorithm) error {
	if k.state.Load().signers[alg] != nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.state.Load().signers[alg] != nil {
		return nil
	}
	priv, err := generate(alg)
	if err != nil {
		return err
	}
	jk, err := jwk.FromRaw(priv)
	if err != nil {
		return err
	}
	tp, err := jk.Thumbprint(crypto.SHA256)
	if err != nil {
		return err
	}
	kid := b64.EncodeToString(tp)
	raw, err := json.Marshal(jk)
	if err != nil {
		return err
	}
	if err := k.store.AddSigningKey(ctx, storage.SigningKey{KID: kid, Alg: string(alg), CreatedAt: time.Now().UTC(), JWK: raw}); err != nil {
		return fmt.Errorf("persisting signing key: %w", err)
	}
	return k.reload(ctx)
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
	if s := k.state.Load().signers[alg]; s != nil {
		return s, nil
	}
	return nil, errNoSigner
}

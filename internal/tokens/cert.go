package tokens

// Certificates of the signing keys: each key's JWK carries x5c, a
// self-signed X.509 certificate of its public half, for SDKs configured
// with one certificate rather than a JWKS URL (Casdoor's SDKs take a PEM).
// The certificate is made once, with the key, and stored with it, so it
// stays the same across restarts and on every node; a key stored before
// certificates existed gets one the first time a process holding the key
// lock sees it without (EnsureSigner at start, RetireKeys at each sweep).

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/lestrrat-go/jwx/v2/cert"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// certLifetime is how long a key's certificate is valid: far beyond any
// key's life (a rotated key is deleted once its tokens expired), as
// Casdoor's certificates are, so an SDK checking the validity period never
// refuses a live key.
const certLifetime = 20 * 365 * 24 * time.Hour

// selfSigned makes the certificate of key: self-signed by the key itself,
// for digital signatures only, named after its kid.
func selfSigned(key crypto.Signer, kid string, created time.Time) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	name := pkix.Name{CommonName: "guestauth token signing key " + kid, Organization: []string{"guestauth"}}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		Issuer:                name,
		NotBefore:             created.Add(-time.Hour).UTC(), // clocks that run behind
		NotAfter:              created.Add(certLifetime).UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certificate of signing key %s: %w", kid, err)
	}
	return der, nil
}

// setCertificate sets x5c and x5t#S256 of pub from a stored certificate.
func setCertificate(pub jwk.Key, der []byte) error {
	var chain cert.Chain
	if err := chain.Add([]byte(base64.StdEncoding.EncodeToString(der))); err != nil {
		return err
	}
	if err := pub.Set(jwk.X509CertChainKey, &chain); err != nil {
		return err
	}
	sum := sha256.Sum256(der)
	return pub.Set(jwk.X509CertThumbprintS256Key, b64.EncodeToString(sum[:]))
}

// ensureCerts gives every stored key without a certificate one; the
// caller holds the key lock. It reloads the keys when it stored any.
func (k *Keyring) ensureCerts(ctx context.Context) error {
	stored, err := k.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("loading signing keys: %w", err)
	}
	added := false
	for _, sk := range stored {
		if len(sk.Cert) > 0 {
			continue
		}
		signer, err := privateKey(sk)
		if err != nil {
			return err
		}
		der, err := selfSigned(signer, sk.KID, sk.CreatedAt)
		if err != nil {
			return err
		}
		// ErrExists: a process of an older layout cannot have made one, so
		// only a concurrent holder of a lock we hold could; take it as done.
		// ErrNotFound: the key was retired meanwhile.
		switch err := k.store.SetSigningKeyCert(ctx, sk.KID, der); {
		case err == nil:
			added = true
		case errors.Is(err, model.ErrExists), errors.Is(err, model.ErrNotFound):
		default:
			return fmt.Errorf("storing the certificate of signing key %s: %w", sk.KID, err)
		}
	}
	if !added {
		return nil
	}
	return k.reload(ctx)
}

// EnsureCerts gives every stored key without a certificate one, under the
// store's key lock (see the file comment).
func (k *Keyring) EnsureCerts(ctx context.Context) error {
	if !k.state.Load().uncertified {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.locked(ctx, k.ensureCerts)
}

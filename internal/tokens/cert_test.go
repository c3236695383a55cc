package tokens_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	_ "github.com/guestauth/caddy-guestauth/storage/bolt"
)

func openBolt(t *testing.T, path string) storage.Backend {
	t.Helper()
	st, err := storage.Open(context.Background(), storage.Config{Kind: storage.KindBolt, Location: path})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// x5cOf checks every key of the JWKS document raw: it carries one x5c
// certificate, self-signed, whose public key is the JWK's own and whose
// x5t#S256 is its thumbprint. It returns the certificates by kid.
func x5cOf(t *testing.T, raw []byte) map[string][]byte {
	t.Helper()
	set, err := jwk.Parse(raw)
	if err != nil {
		t.Fatalf("JWKS: %v: %s", err, raw)
	}
	var doc struct {
		Keys []struct {
			KID  string   `json:"kid"`
			X5C  []string `json:"x5c"`
			X5TS string   `json:"x5t#S256"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for i, k := range doc.Keys {
		if len(k.X5C) != 1 {
			t.Fatalf("key %s: x5c %v, want one certificate", k.KID, k.X5C)
		}
		der, err := base64.StdEncoding.DecodeString(k.X5C[0])
		if err != nil {
			t.Fatalf("key %s: x5c is not standard base64: %v", k.KID, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("key %s: certificate: %v", k.KID, err)
		}
		if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
			t.Fatalf("key %s: the certificate is not self-signed by the key: %v", k.KID, err)
		}
		key, _ := set.Key(i)
		var pub any
		if err := key.Raw(&pub); err != nil {
			t.Fatal(err)
		}
		if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
			t.Fatalf("key %s: the certificate's public key is not the JWK's", k.KID)
		}
		sum := sha256.Sum256(der)
		if k.X5TS != base64.RawURLEncoding.EncodeToString(sum[:]) {
			t.Fatalf("key %s: x5t#S256 %q is not the certificate's thumbprint", k.KID, k.X5TS)
		}
		if cert.KeyUsage != x509.KeyUsageDigitalSignature || cert.IsCA || time.Until(cert.NotAfter) < 10*365*24*time.Hour {
			t.Fatalf("key %s: certificate usage %v, CA %v, valid until %v", k.KID, cert.KeyUsage, cert.IsCA, cert.NotAfter)
		}
		out[k.KID] = der
	}
	return out
}

// Every key of every algorithm carries its certificate, the same one after
// a restart and after a rotation made another key.
func TestKeyCertificates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.db")
	st := openBolt(t, path)
	k, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range tokens.Algorithms {
		if err := k.EnsureSigner(ctx, alg); err != nil {
			t.Fatal(err)
		}
	}
	first := x5cOf(t, k.JWKS())
	if len(first) != 3 {
		t.Fatalf("%d certificates, want one per algorithm", len(first))
	}
	if _, err := k.Rotate(ctx, jwa.ES256); err != nil {
		t.Fatal(err)
	}
	rotated := x5cOf(t, k.JWKS())
	if len(rotated) != 4 {
		t.Fatalf("%d certificates after the rotation, want 4", len(rotated))
	}
	st.Close()

	st = openBolt(t, path)
	defer st.Close()
	again, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.EnsureSigner(ctx, jwa.RS256); err != nil {
		t.Fatal(err)
	}
	after := x5cOf(t, again.JWKS())
	for kid, der := range rotated {
		if !bytes.Equal(after[kid], der) {
			t.Fatalf("key %s has another certificate after the restart", kid)
		}
	}
	for kid, der := range first {
		if !bytes.Equal(rotated[kid], der) {
			t.Fatalf("key %s has another certificate after the rotation", kid)
		}
	}
}

// A key stored before certificates existed gets one, stored, once.
func TestKeyCertificateForAnOlderKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openBolt(t, filepath.Join(t.TempDir(), "keys.db"))
	defer st.Close()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jk, _ := jwk.FromRaw(priv)
	raw, _ := json.Marshal(jk)
	if err := st.AddSigningKey(ctx, model.SigningKey{KID: "legacy", Alg: "ES256", CreatedAt: time.Now().UTC(), JWK: raw}); err != nil {
		t.Fatal(err)
	}
	k, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(k.JWKS(), []byte("x5c")) {
		t.Fatalf("a key without a certificate published one: %s", k.JWKS())
	}
	if err := k.EnsureSigner(ctx, jwa.ES256); err != nil {
		t.Fatal(err)
	}
	if k.SignerKID(jwa.ES256) != "legacy" {
		t.Fatalf("EnsureSigner made a new key instead of keeping %q", "legacy")
	}
	der := x5cOf(t, k.JWKS())["legacy"]
	stored, err := st.SigningKeys(ctx)
	if err != nil || len(stored) != 1 || !bytes.Equal(stored[0].Cert, der) {
		t.Fatalf("stored: %+v, %v", stored, err)
	}
	if err := k.EnsureSigner(ctx, jwa.ES256); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x5cOf(t, k.JWKS())["legacy"], der) {
		t.Fatal("the certificate changed on the second EnsureSigner")
	}
	// A sweep (RetireKeys) certifies a key another process stored without one.
	priv2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jk2, _ := jwk.FromRaw(priv2)
	raw2, _ := json.Marshal(jk2)
	if err := st.AddSigningKey(ctx, model.SigningKey{KID: "legacy2", Alg: "ES256", CreatedAt: time.Now().UTC(), JWK: raw2}); err != nil {
		t.Fatal(err)
	}
	if err := k.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := k.RetireKeys(ctx, time.Now(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if certs := x5cOf(t, k.JWKS()); len(certs) != 2 || !bytes.Equal(certs["legacy"], der) {
		t.Fatalf("after the sweep: %d certificates", len(certs))
	}
}

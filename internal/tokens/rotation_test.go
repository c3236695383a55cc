package tokens_test

import (
	"context"
	"sync"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// lockingKeys is a memKeys shared by several processes, with the lock a
// shared store provides.
type lockingKeys struct {
	memKeys
	lock sync.Mutex
}

func (l *lockingKeys) LockSigningKeys(ctx context.Context, fn func(context.Context) error) error {
	l.lock.Lock()
	defer l.lock.Unlock()
	return fn(ctx)
}

func load(t *testing.T, st tokens.KeyStore) *tokens.Keyring {
	t.Helper()
	k, err := tokens.LoadKeyring(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A rotated key signs; the old one still verifies what it signed; both are
// published.
func TestRotateNewKeySignsOldVerifies(t *testing.T) {
	t.Parallel()
	k := newKeyring(t, jwa.ES256)
	old := k.SignerKID(jwa.ES256)
	before := mint(t, k, grant(jwa.ES256), subject)
	kid, err := k.Rotate(context.Background(), jwa.ES256)
	if err != nil || kid == "" || kid == old || k.SignerKID(jwa.ES256) != kid {
		t.Fatalf("Rotate = %q, %v; signer %q (old %q)", kid, err, k.SignerKID(jwa.ES256), old)
	}
	after := mint(t, k, grant(jwa.ES256), subject)
	if hdr, _, _ := parts(t, after.AccessToken); hdr["kid"] != kid {
		t.Fatalf("a token minted after the rotation names kid %v, want %s", hdr["kid"], kid)
	}
	for _, m := range []*tokens.Minted{before, after} {
		if _, err := verifierAt(k, now0).Verify(m.AccessToken, issuer); err != nil {
			t.Fatalf("verify: %v", err)
		}
	}
	set, err := jwk.Parse(k.JWKS())
	if err != nil || set.Len() != 2 {
		t.Fatalf("JWKS after rotation: %d keys, %v", set.Len(), err)
	}
}

// A process verifies a token signed with a key another process sharing the
// store added after it loaded its keys.
func TestKeyAddedElsewhereVerifies(t *testing.T) {
	t.Parallel()
	st := &lockingKeys{}
	a, b := load(t, st), load(t, st)
	if err := a.EnsureSigner(context.Background(), jwa.ES256); err != nil {
		t.Fatal(err)
	}
	m := mint(t, a, grant(jwa.ES256), subject)
	if _, err := verifierAt(b, now0).Verify(m.AccessToken, issuer); err != nil {
		t.Fatalf("b verifies a's first key: %v", err)
	}
	if err := b.EnsureSigner(context.Background(), jwa.ES256); err != nil {
		t.Fatal(err)
	}
	if b.SignerKID(jwa.ES256) != a.SignerKID(jwa.ES256) {
		t.Fatal("b made a key of its own although a's was stored")
	}
	if _, err := a.Rotate(context.Background(), jwa.ES256); err != nil {
		t.Fatal(err)
	}
	// b reloaded for an unknown kid above: the next such reload may come
	// keyReloadGap later.
	tokens.WaitReloadGap()
	m2 := mint(t, a, grant(jwa.ES256), subject)
	if _, err := verifierAt(b, now0).Verify(m2.AccessToken, issuer); err != nil {
		t.Fatalf("b verifies a's rotated key: %v", err)
	}
}

// Processes starting together on a shared store make one key, not one each.
func TestEnsureSignerOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	st := &lockingKeys{}
	var rings []*tokens.Keyring
	for range 8 {
		rings = append(rings, load(t, st))
	}
	var wg sync.WaitGroup
	for _, k := range rings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := k.EnsureSigner(context.Background(), jwa.RS256); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := len(st.keys); n != 1 {
		t.Fatalf("%d keys made by 8 processes starting together, want 1", n)
	}
	for _, k := range rings {
		if k.SignerKID(jwa.RS256) != st.keys[0].KID {
			t.Fatal("a process signs with another key than the stored one")
		}
	}
}

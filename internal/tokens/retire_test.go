package tokens_test

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// retireKeysCheck rotates st's ES256 key, then checks with an injected
// clock that the old key verifies its token until the bound (successor's
// creation + KeyRefreshAge + maxLifetime) and is deleted, from the store
// and the JWKS, at it; the current keys are never deleted.
func retireKeysCheck(t *testing.T, st tokens.KeyStore) {
	t.Helper()
	ctx := context.Background()
	k := load(t, st)
	if err := k.EnsureSigner(ctx, jwa.ES256); err != nil {
		t.Fatal(err)
	}
	if err := k.EnsureSigner(ctx, jwa.RS256); err != nil {
		t.Fatal(err)
	}
	old := k.SignerKID(jwa.ES256)
	rsKID := k.SignerKID(jwa.RS256)
	tok := mint(t, k, grant(jwa.ES256), subject)
	cur, err := k.Rotate(ctx, jwa.ES256)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.SigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var rotated time.Time
	for _, sk := range keys {
		if sk.KID == cur {
			rotated = sk.CreatedAt
		}
	}
	const life = time.Hour + 30*time.Second
	bound := rotated.Add(tokens.KeyRefreshAge + life)

	// Before the bound: nothing retired, the old key verifies.
	if kids, err := k.RetireKeys(ctx, bound.Add(-time.Second), life); err != nil || len(kids) != 0 {
		t.Fatalf("before the bound: retired %v, %v", kids, err)
	}
	if _, err := verifierAt(k, now0).Verify(tok.AccessToken, issuer); err != nil {
		t.Fatalf("old key before the bound: %v", err)
	}
	// At the bound: the old key goes; the current keys (of both algs) stay.
	kids, err := k.RetireKeys(ctx, bound, life)
	if err != nil || !slices.Equal(kids, []string{old}) {
		t.Fatalf("at the bound: retired %v, %v; want [%s]", kids, err, old)
	}
	keys, _ = st.SigningKeys(ctx)
	var left []string
	for _, sk := range keys {
		left = append(left, sk.KID)
	}
	slices.Sort(left)
	want := []string{cur, rsKID}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Fatalf("stored keys %v; want the current ones %v", left, want)
	}
	set, err := jwk.Parse(k.JWKS())
	if err != nil || set.Len() != 2 {
		t.Fatalf("JWKS: %d keys, %v", set.Len(), err)
	}
	if _, ok := set.LookupKeyID(old); ok {
		t.Fatal("the retired key is still published")
	}
	tokens.WaitReloadGap()
	if _, err := verifierAt(k, now0).Verify(tok.AccessToken, issuer); err == nil {
		t.Fatal("a token of the retired key still verifies")
	}
	// Much later, the current keys are still never deleted.
	if kids, err := k.RetireKeys(ctx, bound.Add(1000*time.Hour), life); err != nil || len(kids) != 0 {
		t.Fatalf("later: retired %v, %v", kids, err)
	}
	if k.SignerKID(jwa.ES256) != cur {
		t.Fatal("the current key changed")
	}
}

type deletingKeys struct{ memKeys }

func (d *deletingKeys) DeleteSigningKey(_ context.Context, kid string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys = slices.DeleteFunc(d.keys, func(k model.SigningKey) bool { return k.KID == kid })
	return nil
}

func TestRetireKeysMemory(t *testing.T) {
	t.Parallel()
	retireKeysCheck(t, &deletingKeys{})
}

func TestRetireKeysBolt(t *testing.T) {
	t.Parallel()
	st, err := storage.Open(context.Background(), storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "keys.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	retireKeysCheck(t, st)
}

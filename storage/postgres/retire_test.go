package postgres_test

import (
	"slices"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
)

// A key rotated on node A is retired by node B's sweep once every token it
// signed has expired (injected clock), and not before; the current key
// stays, and node A no longer finds the old one after reloading.
func TestRetireKeysAcrossNodes(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, err := tokens.LoadKeyring(bg, open(t, dsn, postgres.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.EnsureSigner(bg, jwa.ES256); err != nil {
		t.Fatal(err)
	}
	old := a.SignerKID(jwa.ES256)
	cur, err := a.Rotate(bg, jwa.ES256)
	if err != nil {
		t.Fatal(err)
	}
	st := open(t, dsn, postgres.Options{})
	b, err := tokens.LoadKeyring(bg, st)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.SigningKeys(bg)
	if err != nil || len(keys) != 2 || keys[1].KID != cur {
		t.Fatalf("keys %+v, %v", keys, err)
	}
	life := time.Hour
	bound := keys[1].CreatedAt.Add(tokens.KeyRefreshAge + life)
	if kids, err := b.RetireKeys(bg, bound.Add(-time.Millisecond), life); err != nil || len(kids) != 0 {
		t.Fatalf("before the bound: %v, %v", kids, err)
	}
	if kids, err := b.RetireKeys(bg, bound, life); err != nil || !slices.Equal(kids, []string{old}) {
		t.Fatalf("at the bound: %v, %v; want [%s]", kids, err, old)
	}
	if err := a.Reload(bg); err != nil {
		t.Fatal(err)
	}
	keys, err = st.SigningKeys(bg)
	if err != nil || len(keys) != 1 || keys[0].KID != cur || a.SignerKID(jwa.ES256) != cur {
		t.Fatalf("after retiring: keys %+v, %v; A signs with %s", keys, err, a.SignerKID(jwa.ES256))
	}
}

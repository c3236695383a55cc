package tokens_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

func TestDeriveSecret(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "keys.db")
	st, err := storage.Open(context.Background(), storage.Config{Location: path})
	if err != nil {
		t.Fatal(err)
	}
	k, err := tokens.LoadKeyring(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range tokens.Algorithms {
		if err := k.EnsureSigner(context.Background(), alg); err != nil {
			t.Fatal(err)
		}
	}
	secrets := map[string][]byte{}
	for _, alg := range tokens.Algorithms {
		for _, purpose := range []string{"a", "b"} {
			s, err := k.DeriveSecret(alg, purpose)
			if err != nil || len(s) != 32 {
				t.Fatalf("DeriveSecret(%s, %s) = %x, %v", alg, purpose, s, err)
			}
			for other, o := range secrets {
				if bytes.Equal(o, s) {
					t.Fatalf("%s/%s repeats the secret of %s", alg, purpose, other)
				}
			}
			secrets[string(alg)+"/"+purpose] = s
		}
	}
	st.Close()

	// The same secret after a restart: it is derived from the stored key.
	st, err = storage.Open(context.Background(), storage.Config{Location: path})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	k2, err := tokens.LoadKeyring(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range tokens.Algorithms {
		s, err := k2.DeriveSecret(alg, "a")
		if err != nil || !bytes.Equal(s, secrets[string(alg)+"/a"]) {
			t.Fatalf("%s secret changed across a restart: %v", alg, err)
		}
	}
	if _, err := newKeyring(t).DeriveSecret(jwa.ES256, "a"); err == nil {
		t.Fatal("a secret was derived without a signing key")
	}
}

package tokens_test

// In-process cost of the token hot paths (go test -bench . -run '^$'
// ./tokens): Verify with the verified-token cache hit and missed, and Mint
// (one access and one ID token, so two signatures), per algorithm.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// benchKeys is a KeyStore of its own, so the benchmarks don't depend on the
// tests' helpers.
type benchKeys struct {
	mu   sync.Mutex
	keys []model.SigningKey
}

func (m *benchKeys) SigningKeys(context.Context) ([]model.SigningKey, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]model.SigningKey(nil), m.keys...), nil
}

func (m *benchKeys) AddSigningKey(_ context.Context, k model.SigningKey) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys = append(m.keys, k)
	return nil
}

func (m *benchKeys) DeleteSigningKey(context.Context, string) error { return nil }

func (m *benchKeys) SetSigningKeyCert(context.Context, string, []byte) error { return nil }

func (m *benchKeys) LockSigningKeys(ctx context.Context, fn func(context.Context) error) error {
	return fn(ctx) // the benchmarks run one keyring
}

var benchNow = time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)

// benchSetup makes a keyring with a signer for alg, a grant and a subject.
// Run it outside b.Run's function: that one is called again for each b.N.
func benchSetup(b *testing.B, alg jwa.SignatureAlgorithm) (*tokens.Keyring, tokens.Grant, tokens.Subject) {
	b.Helper()
	k, err := tokens.LoadKeyring(context.Background(), &benchKeys{})
	if err != nil {
		b.Fatal(err)
	}
	if err := k.EnsureSigner(context.Background(), alg); err != nil {
		b.Fatal(err)
	}
	g := tokens.Grant{Alg: alg, Issuer: "https://auth.example.com", ClientID: "app", Scope: "openid", Now: benchNow, AccessTTL: time.Hour, IDTTL: time.Hour}
	sub := tokens.Subject{UserID: "7f9c2a4e-0b1d-4c55-9e0f-3a6b8d2c1e47", Name: "guest_7f9c2a4e", Tag: model.TagGuest, Anonymous: true,
		SessionID: "0d6e1f3a-8b2c-4e7d-a9f0-5c3b1e2d4a68", AuthTime: benchNow}
	return k, g, sub
}

func BenchmarkVerify(b *testing.B) {
	clock := func() time.Time { return benchNow.Add(time.Minute) }
	for _, alg := range tokens.Algorithms {
		k, g, sub := benchSetup(b, alg)
		var raw [2]string
		for i := range raw {
			m, err := k.Mint(g, sub) // a fresh jti each time: distinct tokens
			if err != nil {
				b.Fatal(err)
			}
			raw[i] = m.AccessToken
		}
		verify := func(b *testing.B, v *tokens.Verifier) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := v.Verify(raw[i&1], g.Issuer); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(string(alg)+"/hit", func(b *testing.B) {
			v := &tokens.Verifier{Keys: k, Now: clock, Cache: tokens.NewCache(16), Audiences: []string{"app"}}
			for _, r := range raw { // fill the cache
				if _, err := v.Verify(r, g.Issuer); err != nil {
					b.Fatal(err)
				}
			}
			verify(b, v)
		})
		// A one-entry cache fed two tokens in turn misses every time, so
		// this is full verification plus the cache's lookup and insert.
		b.Run(string(alg)+"/miss", func(b *testing.B) {
			verify(b, &tokens.Verifier{Keys: k, Now: clock, Cache: tokens.NewCache(1), Audiences: []string{"app"}})
		})
	}
}

func BenchmarkMint(b *testing.B) {
	for _, alg := range tokens.Algorithms {
		k, g, sub := benchSetup(b, alg)
		b.Run(string(alg), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Mint(g, sub); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package tokens_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// FuzzVerify: whatever bytes arrive as a bearer token, Verify never panics
// and accepts nothing but the tokens the keyring minted.
func FuzzVerify(f *testing.F) {
	st, err := storage.Open(context.Background(), storage.Config{Location: filepath.Join(f.TempDir(), "fuzz.db")})
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	keys, err := tokens.LoadKeyring(context.Background(), st)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	minted := map[string]bool{}
	for _, alg := range tokens.Algorithms {
		if err := keys.EnsureSigner(context.Background(), alg); err != nil {
			f.Fatal(err)
		}
		m, err := keys.Mint(tokens.Grant{Alg: alg, Issuer: "https://iss", ClientID: "app", Scope: "openid", Now: now, AccessTTL: time.Hour, IDTTL: time.Hour},
			tokens.Subject{UserID: "u", Name: "guest_u", Tag: model.TagGuest, Anonymous: true, SessionID: "s", AuthTime: now})
		if err != nil {
			f.Fatal(err)
		}
		minted[m.AccessToken] = true
		f.Add(m.AccessToken)
		f.Add(m.IDToken)
		parts := strings.Split(m.AccessToken, ".")
		f.Add(parts[0] + "." + parts[1] + ".")
		f.Add("eyJhbGciOiJub25lIn0." + parts[1] + ".")
	}
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	v := &tokens.Verifier{Keys: keys, Skew: time.Minute, Now: func() time.Time { return now }, Audiences: []string{"app"}}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(raw, "https://iss")
		if err == nil && !minted[raw] {
			t.Fatalf("accepted a token it did not mint: %q -> %+v", raw, c)
		}
		if err == nil && c.Subject != "u" {
			t.Fatalf("claims: %+v", c)
		}
		if err != nil {
			if _, ok := err.(*tokens.InvalidError); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
		}
	})
}

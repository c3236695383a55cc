package caddymodule

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// The sweep retires a rotated-out key after the rotation + the keyring's
// refresh age + this config's longest token lifetime + clock skew (here
// 10m + 30s, assertions' 1m being shorter), with the config's clock.
func TestSweepRetiresRotatedKeys(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	g, err := provisionConfig(t, newTestContext(t), t.TempDir(), "access_token_lifetime 10m\nclock_skew 30s\nassertion", func(g *GuestAuth) {
		g.now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := g.maxTokenLifetime(); got != 10*time.Minute+30*time.Second {
		t.Fatalf("maxTokenLifetime = %v", got)
	}
	ctx := context.Background()
	keys := g.shared.keys
	old := keys.SignerKID(jwa.ES256)
	rotatedAt := time.Now()
	cur, err := keys.Rotate(ctx, jwa.ES256)
	if err != nil {
		t.Fatal(err)
	}
	has := func(kid string) bool {
		ks, err := g.shared.store.SigningKeys(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range ks {
			if k.KID == kid {
				return true
			}
		}
		return false
	}
	// Just before the earliest possible bound: kept.
	now.Store(rotatedAt.Add(tokens.KeyRefreshAge + 10*time.Minute + 30*time.Second - time.Second).UnixNano())
	if err := g.retireKeys(ctx); err != nil || !has(old) {
		t.Fatalf("before the bound: %v, old key kept %v", err, has(old))
	}
	now.Store(rotatedAt.Add(tokens.KeyRefreshAge + 10*time.Minute + 31*time.Second).UnixNano())
	if err := g.retireKeys(ctx); err != nil || has(old) || !has(cur) {
		t.Fatalf("after the bound: %v, old key kept %v, current kept %v", err, has(old), has(cur))
	}
}

//go:build linux

package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// TestPrefillStore: an offline-prefilled store holds exactly the guests
// asked for, its counters say so, and a kept guest's tokens work for the
// site that then opens the store with the same issuer and algorithm.
func TestPrefillStore(t *testing.T) {
	ctx := context.Background()
	site := prefillSite{path: filepath.Join(t.TempDir(), "s.db"), issuer: "http://large.bench.invalid", alg: jwa.EdDSA, client: "bench-app"}
	var reported []int
	creds, err := prefillStore(ctx, site, 2500, 10, func(d int) { reported = append(reported, d) })
	if err != nil {
		t.Fatal(err)
	}
	if len(creds) != 10 {
		t.Fatalf("kept %d token sets, want 10", len(creds))
	}
	if len(reported) != 0 {
		t.Errorf("progress %v reported below 100000 guests", reported)
	}

	st, err := bolt.Open(site.path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stats, err := st.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats.Users != 2500 || stats.LiveGuests != 2500 || stats.Sessions != 2500 || stats.NormalUsers != 0 {
		t.Fatalf("stats %+v, want 2500 users, live guests and sessions", stats)
	}
	keys, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := accounts.New(ctx, st, keys, accounts.Config{
		Alg: site.alg, AccessTTL: time.Hour, SessionIdle: time.Hour, SessionLifetime: time.Hour,
		Audiences: []string{site.client},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range creds {
		id, err := svc.Authenticate(ctx, c.access, site.issuer)
		if err != nil {
			t.Fatalf("prefilled access token: %v", err)
		}
		if !id.User.IsAnonymous() || seen[id.User.ID] {
			t.Fatalf("user %+v: want a guest not seen before", id.User)
		}
		seen[id.User.ID] = true
		iss, err := svc.Refresh(ctx, site.issuer, site.client, c.refresh)
		if err != nil {
			t.Fatalf("prefilled refresh token: %v", err)
		}
		if iss.User.ID != id.User.ID {
			t.Fatalf("refresh gave user %s, want %s", iss.User.ID, id.User.ID)
		}
	}
	// The prefill used the store's one signing key, which the site reuses.
	if k, err := st.SigningKeys(ctx); err != nil || len(k) != 1 {
		t.Fatalf("signing keys %v, %v: want the one the prefill made", k, err)
	}
}

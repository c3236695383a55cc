//go:build linux

package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// cred is one guest's token set, as a client keeps it.
type cred struct {
	access, refresh string
}

// prefillSite is what a guest_auth site of the bench mints with: the
// offline prefill must write the records and tokens that site would.
type prefillSite struct {
	path   string // the bbolt file
	issuer string
	alg    jwa.SignatureAlgorithm
	client string
}

// prefillWorkers is how many guests are created at once: the bbolt store
// commits concurrent creations together (up to a thousand a commit), so
// this many callers keep every commit full.
const prefillWorkers = 2000

// prefillStore creates n guests in the site's store before Caddy opens it,
// through accounts.Service.CreateGuest — so exactly the records, counters
// and index entries a guest creation over HTTP writes, with the site's
// signing key (the store's, created on first use as Caddy would) — many
// at a time, so that each bbolt commit holds about a thousand guests
// instead of one. It returns the token sets of keep guests spread evenly
// over the n (the soak's clients), and reports progress every 10⁵ guests.
// The site's lifetimes are the module's defaults, as in the bench's
// Caddyfile.
func prefillStore(ctx context.Context, site prefillSite, n, keep int, progress func(done int)) ([]cred, error) {
	st, err := bolt.Open(site.path, bolt.Options{})
	if err != nil {
		return nil, err
	}
	keys, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	svc, err := accounts.New(ctx, st, keys, accounts.Config{
		Alg:             site.alg,
		AccessTTL:       time.Hour,
		SessionIdle:     30 * 24 * time.Hour,
		SessionLifetime: 90 * 24 * time.Hour,
		Audiences:       []string{site.client},
	}, nil)
	if err != nil {
		st.Close()
		return nil, err
	}
	every := 1
	if keep > 0 && n > keep {
		every = n / keep
	}
	var (
		mu      sync.Mutex
		kept    []cred
		next    atomic.Int64
		done    atomic.Int64
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(prefillWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				iss, err := svc.CreateGuest(ctx, site.issuer, site.client, "127.0.0.1")
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("prefilling %s: %w", site.path, err); cancel() })
					return
				}
				if i%every == 0 {
					mu.Lock()
					if len(kept) < keep {
						kept = append(kept, cred{access: iss.Tokens.AccessToken, refresh: iss.Tokens.RefreshToken})
					}
					mu.Unlock()
				}
				if d := done.Add(1); progress != nil && d%100_000 == 0 {
					progress(int(d))
				}
			}
		}()
	}
	wg.Wait()
	// Close marks the counters exact, so Caddy's open does not recount.
	if err := st.Close(); err != nil && first == nil {
		first = err
	}
	if first != nil {
		return nil, first
	}
	return kept, nil
}

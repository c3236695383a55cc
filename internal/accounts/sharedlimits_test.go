package accounts_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// memLimiter is a storage.SharedLimiter in memory (GCRA, as the postgres
// store's), with an outage switch.
type memLimiter struct {
	mu    sync.Mutex
	tat   map[string]time.Time
	down  bool
	takes int
}

var errDown = errors.Join(model.ErrUnavailable, errors.New("test outage"))

func (m *memLimiter) LimitTake(_ context.Context, name, key string, burst int, iv time.Duration, now time.Time) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return 0, errDown
	}
	m.takes++
	tat := m.tat[name+"|"+key]
	if tat.Before(now) {
		tat = now
	}
	next := tat.Add(iv)
	if over := next.Sub(now) - time.Duration(burst)*iv; over > 0 {
		return over, nil
	}
	m.tat[name+"|"+key] = next
	return 0, nil
}

func (m *memLimiter) LimitRefund(_ context.Context, name, key string, iv time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errDown
	}
	m.tat[name+"|"+key] = m.tat[name+"|"+key].Add(-iv)
	return nil
}

func (m *memLimiter) LimitReset(_ context.Context, name, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.down {
		return errDown
	}
	delete(m.tat, name+"|"+key)
	return nil
}

// spent is how many tries of (name, key) are spent at now.
func (m *memLimiter) spent(name, key string, iv time.Duration, now time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.tat[name+"|"+key].Sub(now)
	if d <= 0 {
		return 0
	}
	return int((d + iv - 1) / iv)
}

// sharedNodes makes n Services ("nodes") on f's store, each with in-memory
// throttles of its own and the shared limits kept in lim.
func sharedNodes(t *testing.T, f *fixture, cfg accounts.Config, lim *memLimiter, n int) (nodes []*accounts.Service, asked []string) {
	t.Helper()
	keys, err := tokens.LoadKeyring(bg, f.store)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		var mem []string
		cfg.Throttles = func(name string, l accounts.Limit) *accounts.Throttle {
			mem = append(mem, name)
			return accounts.NewThrottle(l, f.clock.Now)
		}
		asked = nil
		cfg.SharedLimits = func(name string, l accounts.Limit) accounts.Limiter {
			asked = append(asked, name)
			return accounts.StoreLimit(lim, name, l)
		}
		svc, err := accounts.New(bg, f.store, keys, cfg, f.clock.Now)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range asked {
			if slices.Contains(mem, name) {
				t.Fatalf("%s is both shared and in memory", name)
			}
		}
		nodes = append(nodes, svc)
	}
	slices.Sort(asked)
	return nodes, asked
}

// The account's guess and hash budgets and the global guest rate are the
// shared ones; failed sign-ins split across two nodes lock the account at
// the burst, and a success on either node resets it for both.
func TestSharedLimitsAcrossServices(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
	cfg.Guests.Global = accounts.Limit{Burst: 2, Interval: time.Hour}
	f := newFixture(t, limitsConfig())
	f.member(t, "gail", "right-password")
	lim := &memLimiter{tat: map[string]time.Time{}}
	nodes, asked := sharedNodes(t, f, cfg, lim, 2)
	if want := []string{accounts.ThrottleGuestGlobal, accounts.ThrottleSignInAccount, accounts.ThrottleSignInHash}; !slices.Equal(asked, want) {
		t.Fatalf("shared limits asked for: %v, want %v", asked, want)
	}
	for i := range 3 {
		f.svc = nodes[i%2]
		wantCode(t, f.trySignIn("gail", "wrong-password", "192.0.2.1", ""), accounts.CodeInvalidGrant)
	}
	for _, n := range nodes {
		f.svc = n
		wantThrottled(t, f.trySignIn("gail", "right-password", "192.0.2.2", ""), accounts.LimitSignIn)
	}
	f.clock.Advance(time.Hour)
	f.svc = nodes[1]
	f.signIn(t, "gail", "right-password", "192.0.2.3", "")
	if n := lim.spent(accounts.ThrottleSignInAccount, "acct:gail", time.Hour, f.clock.Now()); n != 0 {
		t.Fatalf("%d guesses spent after a success; want 0 (reset)", n)
	}
	f.svc = nodes[0]
	for range 3 {
		wantCode(t, f.trySignIn("gail", "wrong-password", "192.0.2.1", ""), accounts.CodeInvalidGrant)
	}
	wantThrottled(t, f.trySignIn("gail", "wrong-password", "192.0.2.1", ""), accounts.LimitSignIn)

	// Guest creation: two in the whole cluster, whichever node.
	for i := range 2 {
		if _, err := nodes[i].CreateGuest(bg, issuer, "app", "198.51.100.1"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		_, err := n.CreateGuest(bg, issuer, "app", "198.51.100.2")
		wantThrottled(t, err, accounts.LimitGlobal)
	}
}

// admit stays all-or-nothing: a shared budget that refuses gives back the
// shared tries already taken, and an empty in-memory budget refuses before
// any shared try is spent.
func TestSharedLimitsAllOrNothing(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 5, Interval: time.Hour}
	cfg.AccountHashLimit = accounts.Limit{Burst: 2, Interval: time.Hour}
	cfg.IPLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
	f := newFixture(t, limitsConfig())
	f.member(t, "gail", "right-password")
	lim := &memLimiter{tat: map[string]time.Time{}}
	nodes, _ := sharedNodes(t, f, cfg, lim, 1)
	f.svc = nodes[0]
	for range 2 {
		wantCode(t, f.trySignIn("gail", "wrong-password", "192.0.2.1", ""), accounts.CodeInvalidGrant)
	}
	// The hash budget is empty: the guess taken before it is refunded.
	wantThrottled(t, f.trySignIn("gail", "wrong-password", "192.0.2.1", ""), accounts.LimitSignIn)
	if n := lim.spent(accounts.ThrottleSignInAccount, "acct:gail", time.Hour, f.clock.Now()); n != 2 {
		t.Fatalf("%d guesses spent; want 2 (the refused attempt's refunded)", n)
	}
	// The refused attempt spent none of the in-memory IP budget (3): a
	// third address-wide try passes, then the IP refuses before any shared
	// try is spent.
	wantCode(t, f.trySignIn("nobody", "wrong-password", "192.0.2.1", ""), accounts.CodeInvalidGrant)
	before := lim.takes
	wantThrottled(t, f.trySignIn("nobody2", "wrong-password", "192.0.2.1", ""), accounts.LimitSignIn)
	if lim.takes != before {
		t.Fatalf("%d shared tries taken for a request the IP budget refuses", lim.takes-before)
	}
}

// A store outage during a limit check is model.ErrUnavailable, never an
// admission, and spends nothing of the in-memory budgets.
func TestSharedLimitsOutage(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 5, Interval: time.Hour}
	cfg.IPLimit = accounts.Limit{Burst: 1, Interval: time.Hour}
	cfg.Guests.Global = accounts.Limit{Burst: 5, Interval: time.Hour}
	f := newFixture(t, limitsConfig())
	f.member(t, "gail", "right-password")
	lim := &memLimiter{tat: map[string]time.Time{}}
	nodes, _ := sharedNodes(t, f, cfg, lim, 1)
	f.svc = nodes[0]
	lim.down = true
	if err := f.trySignIn("gail", "right-password", "192.0.2.1", ""); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("sign-in during an outage: %v; want ErrUnavailable", err)
	}
	if _, err := f.svc.CreateGuest(bg, issuer, "app", "198.51.100.1"); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("guest creation during an outage: %v; want ErrUnavailable", err)
	}
	lim.down = false
	f.signIn(t, "gail", "right-password", "192.0.2.1", "") // the IP's one try is intact
}

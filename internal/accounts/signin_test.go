package accounts_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// cheapArgon2 keeps the many hashes of these tests fast; the budgets count
// hashes, not their cost.
var cheapArgon2 = accounts.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}

// limitsConfig has every password budget wide open except those set by the
// test, so each test sees only the budget it is about.
func limitsConfig() accounts.Config {
	cfg := defaultConfig()
	cfg.Argon2 = cheapArgon2
	wide := accounts.Limit{Burst: 1000, Interval: time.Millisecond}
	cfg.AccountLimit, cfg.DeviceLimit, cfg.AccountHashLimit, cfg.IPLimit = wide, wide, wide, wide
	return cfg
}

// member creates a normal user name/password (from its own client IP, so
// its hash spends no budget the test looks at) and returns its identity.
func (f *fixture) member(t *testing.T, name, password string) *accounts.Identity {
	t.Helper()
	_, id := f.guest(t)
	if _, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Name: ptr(name), Password: ptr(password), ClientIP: "setup-" + name}); err != nil {
		t.Fatal(err)
	}
	return f.authenticate(t, f.signIn(t, name, password, "setup-"+name, "").Tokens.AccessToken)
}

func (f *fixture) signIn(t *testing.T, name, password, ip, device string) *accounts.Issued {
	t.Helper()
	in, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: issuer, ClientID: "app", Username: name, Password: password, ClientIP: ip, DeviceToken: device})
	if err != nil {
		t.Fatalf("sign-in of %s from %s: %v", name, ip, err)
	}
	return in
}

func (f *fixture) trySignIn(name, password, ip, device string) error {
	_, err := f.svc.SignIn(bg, accounts.SignInRequest{Issuer: issuer, ClientID: "app", Username: name, Password: password, ClientIP: ip, DeviceToken: device})
	return err
}

// hashGate counts the service's password hashes and, while closed, holds
// each one before it starts, so the attempts hashing stay in flight.
type hashGate struct {
	started atomic.Int64
	entered chan struct{}
	release chan struct{}
	open    atomic.Bool
}

func newHashGate(f *fixture) *hashGate {
	g := &hashGate{entered: make(chan struct{}), release: make(chan struct{})}
	accounts.SetHashHook(f.svc, func() {
		g.started.Add(1)
		if g.open.Load() {
			return
		}
		g.entered <- struct{}{}
		<-g.release
	})
	return g
}

// burst starts n attempts at once and returns when each is either held
// before its hash or finished (refused before hashing); results come later
// from wait.
func (g *hashGate) burst(n int, attempt func(i int) error) (wait func() []error) {
	errs := make([]error, n)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = attempt(i)
			done <- struct{}{}
		}()
	}
	for settled := 0; settled < n; settled++ {
		select {
		case <-g.entered:
		case <-done:
		}
	}
	return func() []error {
		g.open.Store(true)
		close(g.release)
		go func() {
			for range done { // the held attempts finishing
			}
		}()
		wg.Wait()
		close(done)
		return errs
	}
}

// TestConcurrentGuessesSpendTheBudgetFirst is issue 8 finding 1: 60 wrong
// passwords at once from one address, then the right one while they are
// still being checked. Only the account's burst may be hashed; the rest,
// and the right password, are refused with a retry time.
func TestConcurrentGuessesSpendTheBudgetFirst(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 5, Interval: time.Minute}
	cfg.IPLimit = accounts.Limit{Burst: 20, Interval: 10 * time.Second}
	f := newFixture(t, cfg)
	f.member(t, "victim", "right-password")
	gate := newHashGate(f)

	wait := gate.burst(60, func(i int) error {
		return f.trySignIn("victim", fmt.Sprintf("guess-%02d-pw", i), "203.0.113.9", "")
	})
	held := gate.started.Load()
	// The right password, from elsewhere, while the guesses are in flight.
	right := make(chan error, 1)
	go func() { right <- f.trySignIn("victim", "right-password", "198.51.100.7", "") }()
	select {
	case <-gate.entered:
		t.Errorf("the right password was hashed with the budget spent by %d guesses in flight", held)
	case err := <-right:
		wantThrottled(t, err, accounts.LimitSignIn)
	}
	errs := wait()
	if held != 5 {
		t.Fatalf("%d of 60 concurrent guesses were hashed; want the burst, 5", held)
	}
	throttled := 0
	for _, err := range errs {
		var te *accounts.ThrottledError
		if errors.As(err, &te) && te.RetryAfter > 0 && te.RetryAfter <= time.Minute {
			throttled++
		} else {
			wantCode(t, err, accounts.CodeInvalidGrant)
		}
	}
	if throttled != 55 {
		t.Fatalf("%d of 60 guesses throttled, want 55", throttled)
	}
	// A minute refills one try: one more guess, then throttled again.
	f.clock.Advance(time.Minute)
	wantCode(t, f.trySignIn("victim", "guess-again", "203.0.113.9", ""), accounts.CodeInvalidGrant)
	wantThrottled(t, f.trySignIn("victim", "right-password", "198.51.100.7", ""), accounts.LimitSignIn)
	if n := gate.started.Load(); n != 6 {
		t.Fatalf("%d hashes, want 6", n)
	}
}

func TestConcurrentGuessesWithinIPBudget(t *testing.T) {
	cfg := limitsConfig()
	cfg.IPLimit = accounts.Limit{Burst: 20, Interval: 10 * time.Second}
	f := newFixture(t, cfg)
	gate := newHashGate(f)
	// Guesses on 60 names from one address: the IP's budget applies.
	errs := gate.burst(60, func(i int) error {
		return f.trySignIn(fmt.Sprintf("user-%02d", i), "some-password", "203.0.113.9", "")
	})()
	if n := gate.started.Load(); n != 20 {
		t.Fatalf("%d hashes from one IP, want 20", n)
	}
	throttled := 0
	for _, err := range errs {
		if errors.As(err, new(*accounts.ThrottledError)) {
			throttled++
		}
	}
	if throttled != 40 {
		t.Fatalf("%d throttled, want 40", throttled)
	}
}

func TestSignInSuccessResetsGuessBudget(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
	f := newFixture(t, cfg)
	f.member(t, "erin", "right-password")
	for range 2 {
		wantCode(t, f.trySignIn("erin", "wrong-password", "192.0.2.1", ""), accounts.CodeInvalidGrant)
	}
	f.signIn(t, "erin", "right-password", "192.0.2.1", "")
	// The budget is whole again: three more failures before the lock.
	for range 3 {
		wantCode(t, f.trySignIn("erin", "wrong-password", "192.0.2.1", ""), accounts.CodeInvalidGrant)
	}
	te := wantThrottled(t, f.trySignIn("erin", "right-password", "192.0.2.1", ""), accounts.LimitSignIn)
	if te.RetryAfter > time.Hour {
		t.Fatalf("retry after %v", te.RetryAfter)
	}
}

// TestSignInHashBudgetsWhateverOutcome is issue 8 finding 4: successful
// sign-ins are bounded too, per account and per client IP.
func TestSignInHashBudgetsWhateverOutcome(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountHashLimit = accounts.Limit{Burst: 4, Interval: time.Hour}
	f := newFixture(t, cfg)
	f.member(t, "frank", "right-password") // one sign-in, from its own IP
	for i := range 3 {
		f.signIn(t, "frank", "right-password", fmt.Sprintf("192.0.2.%d", i), "")
	}
	wantThrottled(t, f.trySignIn("frank", "right-password", "192.0.2.99", ""), accounts.LimitSignIn)
	f.clock.Advance(time.Hour)
	f.signIn(t, "frank", "right-password", "192.0.2.99", "")

	cfg = limitsConfig()
	cfg.IPLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
	f = newFixture(t, cfg)
	for _, name := range []string{"gina", "hugo", "ivan", "jill"} {
		f.member(t, name, "right-password")
	}
	for _, name := range []string{"gina", "hugo", "ivan"} {
		f.signIn(t, name, "right-password", "203.0.113.5", "")
	}
	wantThrottled(t, f.trySignIn("jill", "right-password", "203.0.113.5", ""), accounts.LimitSignIn)
	f.signIn(t, "jill", "right-password", "203.0.113.6", "")
}

func TestSessionCapEndsOldest(t *testing.T) {
	cfg := limitsConfig()
	cfg.MaxSessionsPerUser = 3
	f := newFixture(t, cfg)
	first := f.member(t, "kate", "right-password") // the guest's session and one sign-in
	var tokens []string
	for range 4 {
		f.clock.Advance(time.Second)
		tokens = append(tokens, f.signIn(t, "kate", "right-password", "192.0.2.1", "").Tokens.AccessToken)
	}
	id, err := f.svc.Authenticate(bg, tokens[0], issuer)
	wantSessionEnded(t, id, err)
	for _, tok := range tokens[1:] {
		f.authenticate(t, tok)
	}
	n := 0
	for _, tok := range tokens {
		if _, err := f.svc.Authenticate(bg, tok, issuer); err == nil {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("%d live sessions, want 3", n)
	}
	if _, err := f.store.GetSession(bg, first.Session.ID); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("the oldest session survived: %v", err)
	}
}

// TestDeviceTokenHolderNotLockedOut is issue 8 finding 6: an attacker
// spending the account's guess budget from many addresses locks out
// clients without a device token, but not the owner's device.
func TestDeviceTokenHolderNotLockedOut(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
	cfg.DeviceLimit = accounts.Limit{Burst: 2, Interval: time.Hour}
	f := newFixture(t, cfg)
	f.member(t, "liam", "right-password")
	f.member(t, "mona", "other-password")
	owner := f.signIn(t, "liam", "right-password", "192.0.2.1", "")
	dev := owner.Tokens.DeviceToken
	if dev == "" || !strings.HasPrefix(dev, owner.User.ID+".") {
		t.Fatalf("device token %q", dev)
	}
	monaDev := f.signIn(t, "mona", "other-password", "192.0.2.2", "").Tokens.DeviceToken

	// The attacker: wrong passwords from many addresses, with no token, a
	// tampered one, and a valid token of another account.
	tampered := dev[:len(dev)-2] + "AA"
	if tampered == dev {
		tampered = dev[:len(dev)-2] + "BB"
	}
	for i, tok := range []string{"", tampered, monaDev} {
		wantCode(t, f.trySignIn("liam", "guess", fmt.Sprintf("203.0.113.%d", i), tok), accounts.CodeInvalidGrant)
	}
	wantThrottled(t, f.trySignIn("liam", "right-password", "192.0.2.1", ""), accounts.LimitSignIn)
	wantThrottled(t, f.trySignIn("liam", "right-password", "192.0.2.1", tampered), accounts.LimitSignIn)

	// The owner's device still signs in, and gets a new token.
	in := f.signIn(t, "liam", "right-password", "192.0.2.1", dev)
	if in.Tokens.DeviceToken == "" || in.Tokens.DeviceToken == dev {
		t.Fatalf("no new device token: %q", in.Tokens.DeviceToken)
	}
	// Its own failures are bounded, and do not touch the account's budget
	// or other devices'.
	for range 2 {
		wantCode(t, f.trySignIn("liam", "typo-password", "192.0.2.1", dev), accounts.CodeInvalidGrant)
	}
	wantThrottled(t, f.trySignIn("liam", "right-password", "192.0.2.1", dev), accounts.LimitSignIn)
	f.signIn(t, "liam", "right-password", "192.0.2.1", in.Tokens.DeviceToken)

	// A device token is only valid for its lifetime (the session lifetime).
	f.clock.Advance(cfg.SessionLifetime)
	for range 3 {
		wantCode(t, f.trySignIn("liam", "guess", "203.0.113.7", ""), accounts.CodeInvalidGrant)
	}
	wantThrottled(t, f.trySignIn("liam", "right-password", "192.0.2.1", in.Tokens.DeviceToken), accounts.LimitSignIn)
}

func TestDeviceTokenRevealsNoAccount(t *testing.T) {
	f := newFixture(t, limitsConfig())
	f.member(t, "nina", "right-password")
	dev := f.signIn(t, "nina", "right-password", "192.0.2.1", "").Tokens.DeviceToken
	_, g := f.guest(t)
	var answers []string
	for _, c := range []struct{ name, tok string }{
		{"nina", dev}, {"nina", ""}, {"nobody-at-all", dev}, {"nobody-at-all", ""}, {g.User.Name, dev}, {"nina", "x.y.z.w"},
	} {
		err := f.trySignIn(c.name, "wrong-password", "192.0.2.1", c.tok)
		wantCode(t, err, accounts.CodeInvalidGrant)
		answers = append(answers, err.Error())
	}
	for _, a := range answers[1:] {
		if a != answers[0] {
			t.Fatalf("answers differ: %q", answers)
		}
	}
}

// TestOldPasswordCheckBudget: wrong old passwords are bounded per session,
// even all at once, and failed sign-ins elsewhere do not lock the owner out
// of changing the password.
func TestOldPasswordCheckBudget(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
	cfg.DeviceLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
	f := newFixture(t, cfg)
	id := f.member(t, "oscar", "first-password")
	for range 3 {
		wantCode(t, f.trySignIn("oscar", "guess", "203.0.113.1", ""), accounts.CodeInvalidGrant)
	}
	wantThrottled(t, f.trySignIn("oscar", "first-password", "192.0.2.1", ""), accounts.LimitSignIn)
	// The signed-in owner can still change the password.
	if _, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("second-password"), OldPassword: ptr("first-password"), ClientIP: "192.0.2.1"}); err != nil {
		t.Fatalf("password change during an attack on sign-in: %v", err)
	}

	// A stolen access token guessing the old password, 20 at once.
	f.clock.Advance(time.Hour)
	id = f.authenticate(t, f.signIn(t, "oscar", "second-password", "192.0.2.1", "").Tokens.AccessToken)
	gate := newHashGate(f)
	errs := gate.burst(20, func(i int) error {
		_, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("taken-over-pw"), OldPassword: ptr(fmt.Sprintf("guess-%02d", i)), ClientIP: "203.0.113.2"})
		return err
	})()
	if n := gate.started.Load(); n != 3 {
		t.Fatalf("%d of 20 concurrent old-password guesses were hashed, want 3", n)
	}
	for _, err := range errs {
		if !errors.As(err, new(*accounts.ThrottledError)) {
			wantCode(t, err, accounts.CodeWrongPassword)
		}
	}
	_, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("taken-over-pw"), OldPassword: ptr("second-password"), ClientIP: "203.0.113.2"})
	wantThrottled(t, err, accounts.LimitSignIn)
}

// TestPasswordHashingBudget is issue 8 finding 4 for /api/update-user: 20
// concurrent password changes hash only the account's burst; hashing new
// passwords is bounded per client IP too.
func TestPasswordHashingBudget(t *testing.T) {
	cfg := limitsConfig()
	cfg.AccountHashLimit = accounts.Limit{Burst: 5, Interval: time.Hour}
	f := newFixture(t, cfg)
	_, id := f.guest(t)
	gate := newHashGate(f)
	errs := gate.burst(20, func(i int) error {
		_, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr(fmt.Sprintf("password-%02d", i)), ClientIP: "192.0.2.1"})
		return err
	})()
	if n := gate.started.Load(); n != 5 {
		t.Fatalf("%d of 20 concurrent password updates were hashed, want 5", n)
	}
	throttled := 0
	for _, err := range errs {
		if errors.As(err, new(*accounts.ThrottledError)) {
			throttled++
		}
	}
	if throttled != 15 {
		t.Fatalf("%d throttled, want 15", throttled)
	}

	cfg = limitsConfig()
	cfg.IPLimit = accounts.Limit{Burst: 2, Interval: time.Hour}
	f = newFixture(t, cfg)
	for range 2 {
		_, id := f.guest(t)
		if _, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("long-password"), ClientIP: "192.0.2.8"}); err != nil {
			t.Fatal(err)
		}
	}
	_, id = f.guest(t)
	_, err := f.svc.UpdateProfile(bg, id, accounts.ProfileUpdate{Password: ptr("long-password"), ClientIP: "192.0.2.8"})
	wantThrottled(t, err, accounts.LimitSignIn)
	if u, _ := f.store.GetUser(bg, id.User.ID); u.PasswordHash != "" || u.Tag != model.TagGuest {
		t.Fatalf("a throttled update changed the user: %+v", u)
	}
}

func TestThrottleTakeResetAndBound(t *testing.T) {
	c := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	th := accounts.NewThrottle(accounts.Limit{Burst: 2, Interval: time.Minute}, c.Now)
	for i := range 3 {
		if w := th.Take("k"); (w > 0) != (i == 2) {
			t.Fatalf("take %d: wait %v", i, w)
		}
	}
	c.Advance(30 * time.Second)
	if w := th.Take("k"); w < 29*time.Second || w > 30*time.Second {
		t.Fatalf("wait %v, want 30s", w)
	}
	c.Advance(30 * time.Second)
	if w := th.Take("k"); w != 0 {
		t.Fatalf("after a refill: wait %v", w)
	}
	th.Reset("k")
	for range 2 {
		if w := th.Take("k"); w != 0 {
			t.Fatalf("after a reset: wait %v", w)
		}
	}
	if accounts.NewThrottle(accounts.Limit{}, c.Now).Take("k") != 0 {
		t.Fatal("a disabled throttle refused")
	}

	// Bounded: a full map first drops the keys whose bucket is full again,
	// then arbitrary ones, never the new key.
	accounts.SetThrottleMax(th, 4)
	for i := range 10 {
		th.Take(fmt.Sprint("spray-", i))
		if n := accounts.ThrottleKeys(th); n > 4 {
			t.Fatalf("%d keys held, bound 4", n)
		}
	}
	if w := th.Take("spray-9"); w != 0 {
		t.Fatalf("the newest key lost its state wrongly: wait %v", w)
	}
	if w := th.Take("spray-9"); w == 0 {
		t.Fatal("the newest key's bucket was dropped")
	}
}

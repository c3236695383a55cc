package storagetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// The capabilities every backend has besides the records: shared limits,
// the webhook outbox and the events stored with a write, the locks, and
// signing-key deletion.

// A burst of tries is allowed, then one per interval; a refused try spends
// nothing and says how long to wait; refunds and resets give tries back;
// keys and limit names are separate buckets.
func testSharedLimits(t *testing.T, st storage.Backend) {
	now := time.Unix(1_800_000_000, 0)
	const burst, iv = 5, time.Minute
	take := func(name, key string, at time.Time) time.Duration {
		t.Helper()
		w, err := st.LimitTake(bg, name, key, burst, iv, at)
		if err != nil {
			t.Fatalf("LimitTake(%s, %s): %v", name, key, err)
		}
		return w
	}
	for i := range burst {
		if w := take("signin_account", "acct:bob", now); w != 0 {
			t.Fatalf("try %d of the burst: wait %v", i+1, w)
		}
	}
	if w := take("signin_account", "acct:bob", now); w != iv {
		t.Fatalf("over the burst: wait %v, want %v", w, iv)
	}
	if w := take("signin_account", "acct:bob", now.Add(iv/4)); w != iv*3/4 {
		t.Fatalf("over the burst a quarter interval later: wait %v, want %v", w, iv*3/4)
	}
	if w := take("signin_account", "acct:eve", now); w != 0 {
		t.Fatalf("another key: wait %v", w)
	}
	if w := take("signin_hash", "acct:bob", now); w != 0 {
		t.Fatalf("another limit: wait %v", w)
	}
	// One interval later, one more try, not two: the refusals spent nothing
	// and did not push the bucket further.
	later := now.Add(iv)
	if w := take("signin_account", "acct:bob", later); w != 0 {
		t.Fatalf("after an interval: wait %v", w)
	}
	if w := take("signin_account", "acct:bob", later); w != iv {
		t.Fatalf("second try after an interval: wait %v", w)
	}
	if err := st.LimitRefund(bg, "signin_account", "acct:bob", iv); err != nil {
		t.Fatal(err)
	}
	if w := take("signin_account", "acct:bob", later); w != 0 {
		t.Fatalf("after a refund: wait %v", w)
	}
	if err := st.LimitReset(bg, "signin_account", "acct:bob"); err != nil {
		t.Fatal(err)
	}
	for i := range burst {
		if w := take("signin_account", "acct:bob", later); w != 0 {
			t.Fatalf("after a reset, try %d: wait %v", i+1, w)
		}
	}
	// Refunding or resetting a full bucket changes nothing.
	if err := st.LimitRefund(bg, "signin_account", "acct:nobody", iv); err != nil {
		t.Fatal(err)
	}
	if err := st.LimitReset(bg, "signin_account", "acct:nobody"); err != nil {
		t.Fatal(err)
	}
	for range burst {
		take("signin_account", "acct:nobody", later)
	}
	if w := take("signin_account", "acct:nobody", later); w != iv {
		t.Fatalf("a refunded full bucket allowed more than its burst: wait %v", w)
	}
	if _, err := st.LimitTake(bg, "x", "k", 0, iv, now); err == nil {
		t.Fatal("a limit without a burst was accepted")
	}
	if _, err := st.LimitTake(bg, "x", "k", 1, 0, now); err == nil {
		t.Fatal("a limit without an interval was accepted")
	}
}

// Concurrent tries never exceed the burst.
func testSharedLimitsConcurrent(t *testing.T, st storage.Backend) {
	now := time.Unix(1_800_000_000, 0)
	const burst = 5
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			w, err := st.LimitTake(bg, "guest_global", "", burst, time.Hour, now)
			if err != nil {
				t.Error(err)
			}
			if w == 0 {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != burst {
		t.Fatalf("%d of 40 concurrent tries allowed; want %d", n, burst)
	}
}

func outboxRec(id, target string, at time.Time) storage.OutboxRecord {
	return storage.OutboxRecord{ID: id, Type: "guest.created", Target: target, Body: []byte(`{"id":"` + id + `"}`), CreatedAt: at}
}

func outboxIDs(recs []storage.OutboxRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// claimAll claims every due record of target (a far-future now), sorted by id.
func claimAll(t *testing.T, st storage.Backend, target string) []string {
	t.Helper()
	got, err := st.OutboxClaim(bg, target, T0.Add(1000*time.Hour), time.Hour, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(slices.Values(outboxIDs(got)))
}

// A claimed record is leased: no other claim gets it until the lease
// ends, then a claim takes it over (with the same id and body, one more
// attempt); delete ends it; retry makes it due again later. Lifecycle
// records come before noisy ones, and another target's are never
// returned.
func testOutboxClaimLeaseDelete(t *testing.T, st storage.Backend) {
	noisy := outboxRec("n1", "T", T0)
	noisy.Noisy, noisy.Type = true, "signin.throttled"
	if err := st.OutboxPut(bg, []storage.OutboxRecord{noisy, outboxRec("e2", "T", T0.Add(time.Second)), outboxRec("e1", "T", T0), outboxRec("other", "U", T0)}); err != nil {
		t.Fatal(err)
	}
	// Storing the same id again changes nothing (a retried put).
	if err := st.OutboxPut(bg, []storage.OutboxRecord{outboxRec("e1", "T", T0.Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.OutboxLen(bg, "T"); err != nil || n != 3 {
		t.Fatalf("OutboxLen(T) = %d, %v; want 3", n, err)
	}
	got, err := st.OutboxClaim(bg, "T", T0.Add(time.Minute), 30*time.Second, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"e1", "e2"}; !slices.Equal(outboxIDs(got), want) || got[0].Attempts != 1 || string(got[0].Body) != `{"id":"e1"}` ||
		!got[0].CreatedAt.Equal(T0) || got[0].Type != "guest.created" || got[0].Target != "T" || got[0].Noisy {
		t.Fatalf("claimed %v (%+v); want %v, first attempt, as stored", outboxIDs(got), got, want)
	}
	// While the lease holds, another claim gets only the noisy record.
	got, err = st.OutboxClaim(bg, "T", T0.Add(time.Minute+29*time.Second), 30*time.Second, 10)
	if err != nil || !slices.Equal(outboxIDs(got), []string{"n1"}) || !got[0].Noisy || got[0].Type != "signin.throttled" {
		t.Fatalf("during the lease: %+v, %v; want [n1]", got, err)
	}
	for _, id := range []string{"e2", "n1", "unknown"} {
		if err := st.OutboxDelete(bg, id); err != nil {
			t.Fatal(err)
		}
	}
	// The first claimer died holding e1: once its lease ended, another
	// claim takes it over.
	got, err = st.OutboxClaim(bg, "T", T0.Add(time.Minute+31*time.Second), 30*time.Second, 10)
	if err != nil || !slices.Equal(outboxIDs(got), []string{"e1"}) || got[0].Attempts != 2 {
		t.Fatalf("after the lease: %+v, %v; want e1, second attempt", got, err)
	}
	if err := st.OutboxRetry(bg, "e1", T0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := st.OutboxRetry(bg, "unknown", T0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, err = st.OutboxClaim(bg, "T", T0.Add(4*time.Minute), 30*time.Second, 10); err != nil || len(got) != 0 {
		t.Fatalf("before the retry time: %v, %v; want nothing", outboxIDs(got), err)
	}
	if got, err = st.OutboxClaim(bg, "T", T0.Add(5*time.Minute), 30*time.Second, 10); err != nil || !slices.Equal(outboxIDs(got), []string{"e1"}) || got[0].Attempts != 3 {
		t.Fatalf("at the retry time: %+v, %v; want e1, third attempt", got, err)
	}
	// Leased or waiting for a retry, a record counts until it is deleted.
	if n, err := st.OutboxLen(bg, "T"); err != nil || n != 1 {
		t.Fatalf("OutboxLen(T) = %d, %v; want 1 (e1, leased)", n, err)
	}
	if got := claimAll(t, st, "U"); !slices.Equal(got, []string{"other"}) {
		t.Fatalf("target U: %v", got)
	}
	if n, err := st.OutboxLen(bg, "nobody"); err != nil || n != 0 {
		t.Fatalf("OutboxLen of an unknown target = %d, %v", n, err)
	}
	// A record that cannot be stored is refused, and so is its batch.
	for _, bad := range []storage.OutboxRecord{{Type: "x", Target: "T"}, {ID: "x", Target: "T"}, {ID: "x", Type: "x"}} {
		if err := st.OutboxPut(bg, []storage.OutboxRecord{outboxRec("fine", "V", T0), bad}); err == nil {
			t.Fatalf("record %+v stored", bad)
		}
	}
	if got := claimAll(t, st, "V"); len(got) != 0 {
		t.Fatalf("a refused batch stored %v", got)
	}
}

// Claims running at once never get the same record while its lease holds:
// every record is claimed exactly once.
func testOutboxConcurrentClaims(t *testing.T, st storage.Backend) {
	const n = 120
	recs := make([]storage.OutboxRecord, n)
	for i := range recs {
		recs[i] = outboxRec(fmt.Sprintf("e%03d", i), "T", T0.Add(time.Duration(i)))
	}
	if err := st.OutboxPut(bg, recs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				got, err := st.OutboxClaim(bg, "T", T0.Add(time.Minute), time.Hour, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, r := range got {
					seen[r.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d records claimed; want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("record %s claimed %d times while leased", id, c)
		}
	}
}

// Trim drops records past the max age, then the oldest beyond the max
// count, and names their types (counted as dropped by the caller); other
// targets keep theirs.
func testOutboxTrim(t *testing.T, st storage.Backend) {
	var recs []storage.OutboxRecord
	for i := range 6 {
		r := outboxRec(fmt.Sprintf("e%d", i), "T", T0.Add(time.Duration(i)*time.Hour))
		if i == 4 {
			r.Noisy, r.Type = true, "signin.throttled"
		}
		recs = append(recs, r)
	}
	recs = append(recs, outboxRec("u", "U", T0))
	if err := st.OutboxPut(bg, recs); err != nil {
		t.Fatal(err)
	}
	types, err := st.OutboxTrim(bg, "T", T0.Add(time.Hour), 3) // e0 too old; of e1..e5, e1 and e2 too many
	if err != nil || len(types) != 3 {
		t.Fatalf("trim: %v, %v; want 3 types", types, err)
	}
	if got := claimAll(t, st, "T"); !slices.Equal(got, []string{"e3", "e4", "e5"}) {
		t.Fatalf("left %v; want [e3 e4 e5]", got)
	}
	if got := claimAll(t, st, "U"); len(got) != 1 {
		t.Fatalf("another target's records were trimmed: %v", got)
	}
	if types, err := st.OutboxTrim(bg, "T", T0, 0); err != nil || len(types) != 0 {
		t.Fatalf("a trim with nothing to drop: %v, %v", types, err)
	}
}

// eventsOf returns the Events of a write called name: one record per user
// created or deleted and one for the sessions ended, or one saying it was
// done, all for target T; calls counts its calls.
func eventsOf(name string, calls *int) storage.Events {
	return func(r storage.TxResult) ([]storage.OutboxRecord, error) {
		*calls++
		var out []storage.OutboxRecord
		for _, u := range r.Created {
			out = append(out, outboxRec(name+":created:"+u.ID, "T", T0))
		}
		for _, u := range r.Deleted {
			out = append(out, outboxRec(name+":deleted:"+u.ID, "T", T0))
		}
		if r.Ended > 0 {
			out = append(out, outboxRec(fmt.Sprintf("%s:ended:%d", name, r.Ended), "T", T0))
		}
		if len(out) == 0 {
			out = append(out, outboxRec(name+":done", "T", T0))
		}
		return out, nil
	}
}

// Every write that reports events stores them in its own transaction,
// built from what it did: stored if and only if it commits.
func testEventsStoredWithWrites(t *testing.T, st storage.Backend) {
	var calls int
	ev := func(name string) storage.Events { return eventsOf(name, &calls) }
	if err := st.CreateUser(bg, NewUser("u1", "guest_u1"), NewSession("s1", "u1"), nil, ev("create")); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, st, NewUser("u2", "guest_u2"), NewSession("s2", "u2"), nil)
	mustCreate(t, st, NewUser("u3", "guest_u3"), nil, nil)
	mustPutSession(t, st, NewSession("s1b", "u1"))
	mustPutSession(t, st, NewSession("s1c", "u1"))
	if _, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.DisplayName = "one"; return nil }, ev("update")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateSession(bg, "s1", func(s *model.Session) error { s.Generation++; return nil }, ev("refresh")); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteSession(bg, "s1b", ev("logout")); err != nil {
		t.Fatal(err)
	}
	if n, err := st.DeleteUserSessions(bg, "u1", "", ev("revoke")); err != nil || n != 2 {
		t.Fatalf("DeleteUserSessions: %d, %v", n, err)
	}
	if err := st.DeleteUser(bg, "u2", ev("delete")); err != nil {
		t.Fatal(err)
	}
	if del, err := st.DeleteUsersIf(bg, []string{"u1", "u3", "nobody"}, func(u *model.User) bool { return u.ID == "u3" }, ev("prune")); err != nil || len(del) != 1 {
		t.Fatalf("DeleteUsersIf: %v, %v", del, err)
	}
	want := []string{"create:created:u1", "delete:deleted:u2", "logout:ended:1", "prune:deleted:u3", "refresh:done", "revoke:ended:2", "update:done"}
	if got := claimAll(t, st, "T"); !slices.Equal(got, want) {
		t.Fatalf("the outbox holds %v; want %v", got, want)
	}
	if calls < len(want) {
		t.Fatalf("Events called %d times for %d writes", calls, len(want))
	}

	// Writes that fail store nothing.
	mustCreate(t, st, NewUser("u4", "guest_u4"), NewSession("s4", "u4"), nil)
	failed := map[string]error{}
	failed["CreateUser(taken id)"] = st.CreateUser(bg, NewUser("u4", "guest_other"), nil, nil, ev("f1"))
	failed["CreateUser(taken name)"] = st.CreateUser(bg, NewUser("u5", "guest_u4"), nil, nil, ev("f2"))
	_, failed["UpdateUser(unknown)"] = st.UpdateUser(bg, "nobody", func(*model.User) error { return nil }, ev("f3"))
	errRefused := errors.New("refused by the update function")
	_, failed["UpdateUser(refused)"] = st.UpdateUser(bg, "u4", func(*model.User) error { return errRefused }, ev("f4"))
	failed["DeleteUser(unknown)"] = st.DeleteUser(bg, "nobody", ev("f5"))
	_, failed["UpdateSession(unknown)"] = st.UpdateSession(bg, "nosuch", func(*model.Session) error { return nil }, ev("f6"))
	failed["DeleteSession(unknown)"] = st.DeleteSession(bg, "nosuch", ev("f7"))
	for name, err := range failed {
		if err == nil {
			t.Errorf("%s succeeded", name)
		}
	}
	if got := claimAll(t, st, "T"); len(got) != 0 {
		t.Fatalf("failed writes stored %v", got)
	}
}

// Events that fail, or whose records cannot be stored, fail their write,
// which then changes nothing.
func testEventsFailTheirWrite(t *testing.T, st storage.Backend) {
	errBoom := errors.New("boom")
	fail := func(storage.TxResult) ([]storage.OutboxRecord, error) { return nil, errBoom }
	unstorable := func(storage.TxResult) ([]storage.OutboxRecord, error) {
		return []storage.OutboxRecord{outboxRec("fine", "T", T0), {ID: "no-target", Type: "x"}}, nil
	}
	for i, ev := range []storage.Events{fail, unstorable} {
		want := func(name string, err error) {
			t.Helper()
			if err == nil || (i == 0 && !errors.Is(err, errBoom)) {
				t.Fatalf("%s with failing events (%d): err = %v", name, i, err)
			}
		}
		id := fmt.Sprint("u", i)
		want("CreateUser", st.CreateUser(bg, NewUser(id, "guest_"+id), NewSession("s"+id, id), nil, ev))
		if _, err := st.GetUser(bg, id); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("the user was stored without its events: %v", err)
		}
		if _, err := st.GetSession(bg, "s"+id); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("the session was stored without its events: %v", err)
		}
		mustCreate(t, st, NewUser(id, "guest_"+id), NewSession("s"+id, id), nil)
		_, err := st.UpdateUser(bg, id, func(u *model.User) error { u.Name = "renamed" + id; return nil }, ev)
		want("UpdateUser", err)
		if u := getUser(t, st, id); u.Name != "guest_"+id {
			t.Fatalf("the update was stored without its events: %+v", u)
		}
		if _, err := st.GetUserByName(bg, "renamed"+id); !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("the name index moved without the events: %v", err)
		}
		_, err = st.UpdateSession(bg, "s"+id, func(s *model.Session) error { s.Generation = 9; return nil }, ev)
		want("UpdateSession", err)
		want("DeleteSession", st.DeleteSession(bg, "s"+id, ev))
		_, err = st.DeleteUserSessions(bg, id, "", ev)
		want("DeleteUserSessions", err)
		if s, err := st.GetSession(bg, "s"+id); err != nil || s.Generation != 1 {
			t.Fatalf("a session write was stored without its events: %+v, %v", s, err)
		}
		want("DeleteUser", st.DeleteUser(bg, id, ev))
		_, err = st.DeleteUsersIf(bg, []string{id}, func(*model.User) bool { return true }, ev)
		want("DeleteUsersIf", err)
		mustIdentity(t, st, id, "s"+id)
	}
	if got := claimAll(t, st, "T"); len(got) != 0 {
		t.Fatalf("failed writes stored %v", got)
	}
}

// LockSigningKeys admits one holder at a time and gives up when its
// context ends; TryLockSweep runs nothing while another holds the same
// name, and different names do not exclude each other.
func testLocks(t *testing.T, st storage.Backend) {
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			err := st.LockSigningKeys(bg, func(context.Context) error {
				n := inside.Add(1)
				defer inside.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(5 * time.Millisecond)
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if m := most.Load(); m != 1 {
		t.Fatalf("%d holders of the signing-key lock at once", m)
	}
	errFn := errors.New("from fn")
	if err := st.LockSigningKeys(bg, func(context.Context) error { return errFn }); !errors.Is(err, errFn) {
		t.Fatalf("LockSigningKeys returned %v, want fn's error", err)
	}
	held, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- st.LockSigningKeys(bg, func(context.Context) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	ran := false
	err := st.LockSigningKeys(ctx, func(context.Context) error { ran = true; return nil })
	cancel()
	if err == nil || ran {
		t.Fatalf("a second holder while the lock was held: err %v, ran %v", err, ran)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	ok, err := st.TryLockSweep(bg, "guests", func(ctx context.Context) error {
		inner, err := st.TryLockSweep(ctx, "guests", func(context.Context) error {
			t.Error("a sweep ran while another held its lock")
			return nil
		})
		if err != nil || inner {
			return fmt.Errorf("nested try of the same lock: %v, %v", inner, err)
		}
		other, err := st.TryLockSweep(ctx, "keys", func(context.Context) error { return nil })
		if err != nil || !other {
			return fmt.Errorf("a sweep under another name did not run: %v, %v", other, err)
		}
		return nil
	})
	if err != nil || !ok {
		t.Fatalf("TryLockSweep: %v, %v", ok, err)
	}
	if ok, err := st.TryLockSweep(bg, "guests", func(context.Context) error { return errFn }); !ok || !errors.Is(err, errFn) {
		t.Fatalf("after release: %v, %v; want it run, with fn's error", ok, err)
	}
}

// A signing key can be deleted; deleting an unknown one is no error.
func testDeleteSigningKey(t *testing.T, st storage.Backend) {
	for _, k := range []model.SigningKey{{KID: "k1", Alg: "ES256", CreatedAt: T0, JWK: []byte(`{}`)}, {KID: "k2", Alg: "ES256", CreatedAt: T0.Add(time.Hour), JWK: []byte(`{}`)}} {
		if err := st.AddSigningKey(bg, k); err != nil {
			t.Fatal(err)
		}
	}
	for _, kid := range []string{"k1", "k1", "unknown"} {
		if err := st.DeleteSigningKey(bg, kid); err != nil {
			t.Fatalf("DeleteSigningKey(%s): %v", kid, err)
		}
	}
	keys, err := st.SigningKeys(bg)
	if err != nil || len(keys) != 1 || keys[0].KID != "k2" {
		t.Fatalf("keys after deleting k1: %+v, %v", keys, err)
	}
	// A deleted kid can be stored again (nothing of it is left).
	if err := st.AddSigningKey(bg, model.SigningKey{KID: "k1", Alg: "ES256", CreatedAt: T0.Add(2 * time.Hour), JWK: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
}

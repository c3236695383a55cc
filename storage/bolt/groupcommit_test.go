package bolt

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

func openGroupTest(t *testing.T, delay time.Duration) (*bbolt.DB, *groupCommit) {
	t.Helper()
	db, err := bbolt.Open(filepath.Join(t.TempDir(), "g.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	return db, newGroupCommit(db, delay)
}

func put(key string) func(*bbolt.Tx) error {
	return func(tx *bbolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(key), []byte("v")) }
}

// A write that finds no commit running and no company expected commits at
// once, whatever the delay: writes one after another never wait for it.
// (bbolt's Batch made each of them wait the full delay.)
func TestGroupCommitLoneWriteDoesNotWait(t *testing.T) {
	t.Parallel()
	db, g := openGroupTest(t, time.Hour)
	tx0 := txID(t, db)
	for i := range 3 {
		Within(t, 10*time.Second, "a lone write with a batch delay of an hour", func() error { return g.do(put(string(rune('a' + i)))) })
	}
	if n := txID(t, db) - tx0; n != 3 {
		t.Fatalf("%d commits for 3 sequential writes", n)
	}
}

func txID(t *testing.T, db *bbolt.DB) (id int) {
	t.Helper()
	if err := db.View(func(tx *bbolt.Tx) error { id = tx.ID(); return nil }); err != nil {
		t.Fatal(err)
	}
	return id
}

// Writes queued while a commit runs share the next commit; one failing or
// panicking function is taken out, gets its own error or panic, and the
// others are committed without it.
func TestGroupCommitSharesAndIsolatesFailures(t *testing.T) {
	t.Parallel()
	db, g := openGroupTest(t, time.Hour)
	g.leader <- struct{}{} // a commit "runs": everything below queues
	boom := errors.New("boom")
	fns := map[string]func(*bbolt.Tx) error{
		"ok1":  put("ok1"),
		"fail": func(tx *bbolt.Tx) error { _ = put("fail")(tx); return boom },
		"ok2":  put("ok2"),
		"panic": func(tx *bbolt.Tx) error {
			_ = put("panic")(tx)
			panic("kaboom")
		},
	}
	results := map[string]any{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, fn := range fns {
		wg.Go(func() {
			var res any
			func() {
				defer func() {
					if p := recover(); p != nil {
						res = p
					}
				}()
				res = g.do(fn)
			}()
			mu.Lock()
			results[name] = res
			mu.Unlock()
		})
	}
	for {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == len(fns) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	tx0 := txID(t, db)
	<-g.leader
	wg.Wait()
	if results["ok1"] != nil || results["ok2"] != nil {
		t.Fatalf("good writes failed: %v", results)
	}
	if err, _ := results["fail"].(error); !errors.Is(err, boom) {
		t.Fatalf("failing write got %v", results["fail"])
	}
	if p, _ := results["panic"].(string); !strings.Contains(p, "kaboom") {
		t.Fatalf("panicking write got %v, want its panic", results["panic"])
	}
	if err := db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket([]byte("b"))
		for k, want := range map[string]bool{"ok1": true, "ok2": true, "fail": false, "panic": false} {
			if got := b.Get([]byte(k)) != nil; got != want {
				t.Errorf("key %s stored %v, want %v", k, got, want)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The two good writes shared one commit (the failed attempts and the
	// solo reruns of the others commit nothing).
	if n := txID(t, db) - tx0; n != 1 {
		t.Fatalf("%d commits for the good writes, want 1", n)
	}
}

// A leader waits for as many writes as the previous commit carried: after
// a commit of 3, the next 3 writes share one commit even when they arrive
// one by one.
func TestGroupCommitWaitsForUsualCompany(t *testing.T) {
	t.Parallel()
	db, g := openGroupTest(t, time.Hour)
	g.want = 3
	tx0 := txID(t, db)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if err := g.do(put(string(rune('x' + i)))); err != nil {
				t.Error(err)
			}
		})
		time.Sleep(5 * time.Millisecond) // arrive one by one
	}
	wg.Wait()
	if n := txID(t, db) - tx0; n != 1 {
		t.Fatalf("%d commits for 3 writes expected together, want 1", n)
	}
}

// Writers that take turns merge: a write that queued while another's
// commit ran waits for that writer's next write, so the two share the next
// commit instead of alternating in commits of one.
func TestGroupCommitMergesTurns(t *testing.T) {
	t.Parallel()
	db, g := openGroupTest(t, time.Hour)
	inA, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() {
		errs <- g.do(func(tx *bbolt.Tx) error {
			once.Do(func() { close(inA) })
			<-release
			return put("a")(tx)
		})
	})
	<-inA // A's commit runs
	tx0 := txID(t, db)
	var bc sync.WaitGroup
	bc.Go(func() { errs <- g.do(put("b")) })
	for {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait() // A is committed; B waits for company
	g.mu.Lock()
	want := g.want
	g.mu.Unlock()
	if want != 2 {
		t.Fatalf("after a commit of one with one queued, the next waits for %d", want)
	}
	bc.Go(func() { errs <- g.do(put("c")) }) // A's client writes again
	bc.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := txID(t, db) - tx0; n != 2 {
		t.Fatalf("%d commits for A, then B and C together; want 2", n)
	}
}

// A commit carries at most maxCalls functions: a leader queued behind more
// than that leads commits until one carries its own.
func TestGroupCommitBoundedCommits(t *testing.T) {
	t.Parallel()
	db, g := openGroupTest(t, time.Hour)
	g.maxCalls = 2
	g.leader <- struct{}{}
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			if err := g.do(put(string(rune('a' + i)))); err != nil {
				t.Error(err)
			}
		})
	}
	for {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == 5 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	tx0 := txID(t, db)
	<-g.leader
	wg.Wait()
	if n := txID(t, db) - tx0; n != 3 {
		t.Fatalf("%d commits for 5 writes of at most 2 each, want 3", n)
	}
}

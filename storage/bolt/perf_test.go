package bolt_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

func perfGuest(i int) (*model.User, *model.Session) {
	id := fmt.Sprintf("u%04d", i)
	u := &model.User{ID: id, Name: model.GuestNamePrefix + id, Tag: model.TagGuest, CreatedAt: t0, UpdatedAt: t0}
	s := &model.Session{ID: "s" + id, UserID: id, ClientID: "app", CreatedAt: t0, LastUsedAt: t0,
		ExpiresAt: t0.Add(time.Hour), IdleExpiresAt: t0.Add(time.Hour), RefreshKey: []byte("k"), Generation: 1}
	return u, s
}

// Writes counts commits: concurrent creations that share one batch commit
// count once, as bbolt's transaction id says.
func TestWritesCountsCommits(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "w.db")
	b, err := bolt.Open(path, bolt.Options{MaxBatchDelay: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	w0, tx0 := b.Writes(), b.TxID()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			u, s := perfGuest(i)
			if err := b.CreateUser(bg, u, s, nil, nil); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// A failed write commits nothing and counts nothing.
	u, s := perfGuest(0)
	if err := b.CreateUser(bg, u, s, nil, nil); err == nil {
		t.Fatal("duplicate user created")
	}
	commits := uint64(b.TxID() - tx0)
	if got := b.Writes() - w0; got != commits {
		t.Fatalf("Writes counted %d, bbolt committed %d transactions", got, commits)
	}
}

// Stats reads counters kept with the records, exact through creations,
// sessions and deletions, and recounted at open when another writer (an
// older build, say) changed the file after the last Close.
func TestStatsCounters(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	for i := range 5 {
		u, s := perfGuest(i)
		mustCreate(t, b, u, s, nil)
	}
	_, s := perfGuest(0)
	s2 := *s
	s2.ID = "second"
	if err := b.PutSession(bg, &s2); err != nil {
		t.Fatal(err)
	}
	if err := b.PutSession(bg, &s2); err != nil { // replacing is no new session
		t.Fatal(err)
	}
	if err := b.DeleteUser(bg, "u0001", nil); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteSession(bg, "su0002", nil); err != nil {
		t.Fatal(err)
	}
	want := func(b *bolt.Store, users, sessions int64) {
		t.Helper()
		st, err := b.Stats(bg)
		if err != nil {
			t.Fatal(err)
		}
		if st.Users != users || st.Sessions != sessions || st.LiveGuests != users {
			t.Fatalf("stats %+v, want %d users (all guests), %d sessions", st, users, sessions)
		}
	}
	want(b, 4, 4)
	b.Close()

	// Reopened after a clean close: the same, without a recount.
	b, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want(b, 4, 4)
	b.Close()

	// Another writer adds a user record behind the counters' back.
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte("users")).Put([]byte("zz"), []byte(`{"id":"zz","name":"zz","tag":"normal-user"}`))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	b, err = bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	st, err := b.Stats(bg)
	if err != nil || st.Users != 5 || st.NormalUsers != 1 || st.Sessions != 4 {
		t.Fatalf("after a foreign write: %+v %v", st, err)
	}
}

// Stats costs the same however many records there are: it reads the
// counters, not the pages (a counter set by hand is what it reports).
func TestStatsReadsCounters(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	u, s := perfGuest(1)
	mustCreate(t, b, u, s, nil)
	if err := b.SetCounterForTest("users", 1234); err != nil {
		t.Fatal(err)
	}
	if st, err := b.Stats(bg); err != nil || st.Users != 1234 {
		t.Fatalf("stats %+v %v: not read from the counter", st, err)
	}
}

// The free-page list is not rewritten at every commit, and a file reopened
// after deletions (free list rebuilt from the pages) keeps its data and
// reuses its free pages: cycles of deleting and recreating the same
// records, each through a reopen, stop growing the data after the first
// (a store that lost its free pages would grow by the records each time;
// the file's size itself moves in powers of two, too coarse to tell).
func TestNoFreelistSync(t *testing.T) {
	t.Parallel()
	b, path := openTemp(t)
	if !b.NoFreelistSync() {
		t.Fatal("commits write the free-page list")
	}
	for i := range 200 {
		u, s := perfGuest(i)
		mustCreate(t, b, u, s, nil)
	}
	var sizes []int64
	for range 4 {
		for i := range 150 {
			if err := b.DeleteUser(bg, fmt.Sprintf("u%04d", i), nil); err != nil {
				t.Fatal(err)
			}
		}
		b.Close()
		var err error
		if b, err = bolt.Open(path, bolt.Options{}); err != nil {
			t.Fatal(err)
		}
		if u, err := b.GetUser(bg, "u0199"); err != nil || u.Name != "guest_u0199" {
			t.Fatalf("after reopen: %v %v", u, err)
		}
		for i := range 150 {
			u, s := perfGuest(i)
			mustCreate(t, b, u, s, nil)
		}
		st, _ := b.Stats(bg)
		sizes = append(sizes, st.DataSize)
	}
	b.Close()
	t.Logf("data size after each cycle: %v", sizes)
	// A cycle recreates about 30 pages of records; allow a few pages of
	// difference in where the last commits' pages landed.
	if sizes[len(sizes)-1] > sizes[0]+4*4096 {
		t.Fatalf("data size after each delete/recreate cycle %v: free pages not reused", sizes)
	}
}

// CreateUser refuses a first session whose id is taken.
func TestCreateUserSessionIDTaken(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	u, s := perfGuest(1)
	mustCreate(t, b, u, s, nil)
	u2, s2 := perfGuest(2)
	s2.ID = s.ID
	if err := b.CreateUser(bg, u2, s2, nil, nil); err == nil {
		t.Fatal("a second user got the first one's session")
	}
	if got, err := b.GetSession(bg, s.ID); err != nil || got.UserID != u.ID {
		t.Fatalf("session %v %v", got, err)
	}
}

// BenchmarkCreateUserConcurrent creates guests from concurrent goroutines
// that each spend 70 µs of CPU before the write (as signing does), and with
// rtt sleep that long before it (as a client's round trip), and reports
// the guests per commit and the pages a commit writes.
func BenchmarkCreateUserConcurrent(b *testing.B) {
	for _, rtt := range []time.Duration{0, 300 * time.Microsecond} {
		for _, par := range []int{1, 4, 16} {
			b.Run(fmt.Sprintf("rtt=%v/goroutines=%d", rtt, 2*par), func(b *testing.B) { benchCreateUsers(b, par, rtt) })
		}
	}
}

func benchCreateUsers(b *testing.B, par int, rtt time.Duration) {
	b.Helper()
	path := filepath.Join(b.TempDir(), "w.db")
	st, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	var next atomic.Int64
	w0, p0 := st.Writes(), st.PagesWritten()
	b.SetParallelism(par)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := int(next.Add(1))
			if rtt > 0 {
				time.Sleep(rtt)
			}
			spin := time.Now().Add(70 * time.Microsecond)
			for time.Now().Before(spin) {
			}
			u, s := perfGuest(i)
			u.ID = fmt.Sprintf("g%09d", i)
			u.Name = model.GuestNamePrefix + u.ID
			s.ID, s.UserID = "s"+u.ID, u.ID
			if err := st.CreateUser(bg, u, s, nil, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	commits := float64(st.Writes() - w0)
	b.ReportMetric(float64(b.N)/commits, "guests/commit")
	b.ReportMetric(float64(st.PagesWritten()-p0)/commits, "pages/commit")
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/float64(next.Load()), "file-bytes/guest")
	}
}

// A write with no other write to share its commit is committed at once,
// however long MaxBatchDelay is: it waits only for the company the
// previous commit had (bbolt's Batch made every write wait the full delay
// when alone).
func TestLoneWriteCommitsAtOnce(t *testing.T) {
	t.Parallel()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "w.db"), bolt.Options{MaxBatchDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// A write stuck inside its commit holds the file's write lock, and
		// Close would wait for it: the test's end is bounded too, so it
		// fails fast rather than hanging until the suite's timeout.
		closed := make(chan error, 1)
		go func() { closed <- b.Close() }()
		select {
		case err := <-closed:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("closing the file: not done after 10s (a write is stuck in its commit)")
		}
	}()
	for i := range 3 {
		u, s := perfGuest(i)
		bolt.Within(t, 10*time.Second, fmt.Sprintf("lone write %d with a batch delay of an hour", i), func() error {
			return b.CreateUser(bg, u, s, nil, nil)
		})
	}
}

// New guests go at the end of the time-ordered buckets, whose pages are
// filled rather than split in halves: 4,000 guests take about 760 bytes
// of file each (with bbolt's default half-full splits, 1,360).
func TestGuestsFillPages(t *testing.T) {
	t.Parallel()
	b, _ := openTemp(t)
	const n = 4000
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for i := int(next.Add(1)); i <= n; i = int(next.Add(1)) {
				u, s := perfGuest(i)
				u.ID = fmt.Sprintf("g%09d", i)
				u.Name = model.GuestNamePrefix + u.ID
				s.ID, s.UserID = "s"+u.ID, u.ID
				if err := b.CreateUser(bg, u, s, nil, nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := b.Stats(bg)
	if err != nil {
		t.Fatal(err)
	}
	per := st.DataSize / n
	t.Logf("%d bytes of file per guest", per)
	if per > 1100 {
		t.Fatalf("%d bytes of file per guest: pages are left half empty", per)
	}
}

// BenchmarkIdentity is the read of every proxied request: a guest's user
// and session, from the identity cache (hit) or, with the cache off, from
// the file (miss: a read transaction and two record decodes).
func BenchmarkIdentity(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache int
	}{{"hit", 0}, {"miss", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			st, err := bolt.Open(filepath.Join(b.TempDir(), "i.db"), bolt.Options{IdentityCacheSize: bc.cache})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			const n = 1000
			var users, sessions [n]string
			for i := range n {
				u, s := perfGuest(i)
				u.ID = fmt.Sprintf("0199b2c4-7e1a-7c3d-9f00-%012d", i)
				u.Name, s.ID, s.UserID = model.GuestNamePrefix+u.ID, fmt.Sprintf("0199b2c4-7e1a-7c3d-9f01-%012d", i), u.ID
				u.LastActiveAt = t0
				if err := st.CreateUser(bg, u, s, nil, nil); err != nil {
					b.Fatal(err)
				}
				users[i], sessions[i] = u.ID, s.ID
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i = (i + 1) % n
				if _, _, err := st.Identity(bg, users[i], sessions[i]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

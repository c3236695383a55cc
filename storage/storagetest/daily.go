package storagetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

func dailyMap(t *testing.T, st storage.Backend, from, to string) map[string]int64 {
	t.Helper()
	cs, err := st.Daily(bg, from, to)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int64{}
	for i, c := range cs {
		if i > 0 && (cs[i-1].Day > c.Day || (cs[i-1].Day == c.Day && cs[i-1].Series >= c.Series)) {
			t.Fatalf("Daily is not sorted by day, then series: %v", cs)
		}
		m[c.Day+" "+c.Series] = c.N
	}
	return m
}

func wantDailyMap(t *testing.T, step string, got, want map[string]int64) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: daily counters %v, want %v", step, got, want)
	}
}

// Daily counters: added by AddDaily and by a write's Events (in the
// write's transaction: a failed write adds nothing), summed per day and
// series, read by inclusive UTC day range; concurrent additions all count.
func testDailyCounters(t *testing.T, st storage.Backend) {
	if err := st.AddDaily(bg, []storage.DayCount{
		{Day: "2030-01-01", Series: "b", N: 2}, {Day: "2030-01-01", Series: "a", N: 1},
		{Day: "2030-01-02", Series: "a", N: 5}, {Day: "2030-01-03", Series: "a", N: 7},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddDaily(bg, []storage.DayCount{{Day: "2030-01-01", Series: "a", N: 3}}); err != nil {
		t.Fatal(err)
	}
	wantDailyMap(t, "two days", dailyMap(t, st, "2030-01-01", "2030-01-02"),
		map[string]int64{"2030-01-01 a": 4, "2030-01-01 b": 2, "2030-01-02 a": 5})
	wantDailyMap(t, "an empty range", dailyMap(t, st, "2029-12-01", "2029-12-31"), map[string]int64{})

	for _, bad := range []storage.DayCount{{Day: "2030-1-1", Series: "a", N: 1}, {Day: "2030-01-01", Series: "", N: 1}} {
		if err := st.AddDaily(bg, []storage.DayCount{bad}); err == nil {
			t.Fatalf("AddDaily(%+v) accepted", bad)
		}
	}

	// A write's Events add their tally with the write.
	tallied := func(series string) storage.Events {
		return func(r storage.TxResult) ([]storage.OutboxRecord, error) {
			r.Tally.Add(time.Date(2030, 2, 1, 23, 59, 59, 0, time.UTC), series, 1)
			r.Tally.Add(time.Date(2030, 2, 2, 0, 0, 0, 0, time.FixedZone("UTC+1", 3600)), series, 10) // 2030-02-01 23:00 UTC
			return nil, nil
		}
	}
	if err := st.CreateUser(bg, NewUser("d1", "guest_d1"), NewSession("sd1", "d1"), nil, tallied("created")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateUser(bg, "d1", func(u *model.User) error { u.Tag = model.TagNormal; return nil }, tallied("upgraded")); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteUser(bg, "d1", tallied("deleted")); err != nil {
		t.Fatal(err)
	}
	// Failed writes add nothing.
	errRefused := errors.New("refused")
	mustCreate(t, st, NewUser("d2", "guest_d2"), nil, nil)
	if err := st.CreateUser(bg, NewUser("d2", "guest_d2"), nil, nil, tallied("failed")); err == nil {
		t.Fatal("a duplicate create succeeded")
	}
	if _, err := st.UpdateUser(bg, "d2", func(*model.User) error { return errRefused }, tallied("failed")); !errors.Is(err, errRefused) {
		t.Fatalf("UpdateUser: %v", err)
	}
	failing := func(r storage.TxResult) ([]storage.OutboxRecord, error) {
		r.Tally.Add(time.Date(2030, 2, 1, 0, 0, 0, 0, time.UTC), "failed", 1)
		return nil, errRefused
	}
	if err := st.DeleteUser(bg, "d2", failing); err == nil {
		t.Fatal("a delete whose events failed succeeded")
	}
	wantDailyMap(t, "writes", dailyMap(t, st, "2030-02-01", "2030-02-02"),
		map[string]int64{"2030-02-01 created": 11, "2030-02-01 deleted": 11, "2030-02-01 upgraded": 11})

	// Concurrent additions all count.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			if i%2 == 0 {
				errs <- st.AddDaily(bg, []storage.DayCount{{Day: "2030-03-01", Series: "x", N: 1}, {Day: "2030-03-01", Series: "y", N: 2}})
				return
			}
			id := fmt.Sprint("c", i)
			errs <- st.CreateUser(bg, NewUser(id, "guest_"+id), nil, nil, func(r storage.TxResult) ([]storage.OutboxRecord, error) {
				r.Tally.Add(time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC), "y", 2)
				r.Tally.Add(time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC), "x", 1)
				return nil, nil
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	wantDailyMap(t, "concurrent", dailyMap(t, st, "2030-03-01", "2030-03-01"), map[string]int64{"2030-03-01 x": 40, "2030-03-01 y": 80})

	// Compacting changes no count, and later additions add to it.
	before := dailyMap(t, st, "2029-01-01", "2031-01-01")
	if err := st.CompactCounters(bg, time.Date(2030, 3, 2, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	wantDailyMap(t, "compacted", dailyMap(t, st, "2029-01-01", "2031-01-01"), before)
	if err := st.AddDaily(bg, []storage.DayCount{{Day: "2030-03-01", Series: "x", N: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := st.CompactCounters(bg, time.Date(2030, 3, 2, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	before["2030-03-01 x"] += 2
	wantDailyMap(t, "added and compacted again", dailyMap(t, st, "2029-01-01", "2031-01-01"), before)
}

// ListUserSessions: a user's sessions, oldest first, and only theirs.
func testListUserSessions(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("a", "guest_a"), NewSession("sa2", "a"), nil)
	mustCreate(t, st, NewUser("ab", "guest_ab"), NewSession("sab", "ab"), nil)
	s := NewSession("sa1", "a")
	s.CreatedAt = s.CreatedAt.Add(-time.Hour)
	mustPutSession(t, st, s)
	mustPutSession(t, st, NewSession("sa3", "a"))
	got, err := st.ListUserSessions(bg, "a")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range got {
		ids = append(ids, s.ID)
	}
	if fmt.Sprint(ids) != "[sa1 sa2 sa3]" {
		t.Fatalf("sessions of a: %v", ids)
	}
	if got, err := st.ListUserSessions(bg, "nobody"); err != nil || len(got) != 0 {
		t.Fatalf("sessions of nobody: %v, %v", got, err)
	}
}

// CountIdleGuests over many hours of activity: equal to what a full scan
// visits, for bounds on and between hours, as activity, keeping, upgrades
// and deletions move users.
func testCountIdleGuests(t *testing.T, st storage.Backend) {
	for i := range 30 {
		u := NewUser(fmt.Sprint("h", i), fmt.Sprint("guest_h", i))
		u.CreatedAt = T0.Add(-time.Duration(i) * 47 * time.Minute)
		mustCreate(t, st, u, nil, nil)
	}
	check := func(step string) {
		t.Helper()
		for _, b := range []time.Duration{-30 * time.Hour, -10 * time.Hour, -5*time.Hour - 17*time.Minute, -time.Hour, 0, time.Minute, 3 * time.Hour} {
			before := T0.Add(b)
			ids := scanIdle(t, st, before, 1000)
			if n, err := st.CountIdleGuests(bg, before); err != nil || n != int64(len(ids)) {
				t.Fatalf("%s: CountIdleGuests(T0%+v) = %d, %v; a scan visits %d", step, b, n, err, len(ids))
			}
		}
	}
	check("created")
	if _, err := st.TouchUsers(bg, map[string]time.Time{"h20": T0.Add(time.Minute), "h21": T0.Add(-2 * time.Hour), "h3": T0.Add(-1 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateUser(bg, "h10", func(u *model.User) error { u.Kept = true; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateUser(bg, "h11", func(u *model.User) error { u.Tag = model.TagNormal; u.PasswordHash = "$argon2id$x"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteUser(bg, "h12", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteUsersIf(bg, []string{"h13", "h14"}, func(*model.User) bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	check("after touches, keeping, an upgrade and deletions")
	// Compacting changes no count; users counted before it then move.
	if err := st.CompactCounters(bg, T0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("compacted")
	if _, err := st.TouchUsers(bg, map[string]time.Time{"h25": T0.Add(2 * time.Minute), "h26": T0.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteUser(bg, "h27", nil); err != nil {
		t.Fatal(err)
	}
	check("moved after compaction")
	if err := st.CompactCounters(bg, T0.Add(5*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("compacted again")
}

// Stats' session count follows every write that stores or ends sessions
// (the dashboard's "sessions now"), checked against the sessions listed.
func testSessionCounter(t *testing.T, st storage.Backend) {
	users := []string{"p1", "p2", "p3", "p4"}
	check := func(step string) {
		t.Helper()
		var n int64
		for _, u := range users {
			ss, err := st.ListUserSessions(bg, u)
			if err != nil {
				t.Fatal(err)
			}
			n += int64(len(ss))
		}
		s, err := st.Stats(bg)
		if err != nil || s.Sessions != n {
			t.Fatalf("%s: Stats.Sessions %v (%v), %d stored", step, s, err, n)
		}
		c, err := st.Counts(bg)
		if err != nil || c.Sessions != s.Sessions || c.Users != s.Users || c.LiveGuests != s.LiveGuests || c.KeptGuests != s.KeptGuests || c.NormalUsers != s.NormalUsers {
			t.Fatalf("%s: Counts %+v (%v), Stats %+v", step, c, err, s)
		}
	}
	for _, u := range users {
		mustCreate(t, st, NewUser(u, "guest_"+u), NewSession("s"+u, u), nil)
	}
	check("created")
	for i := range 4 {
		mustPutSession(t, st, NewSession(fmt.Sprint("sp1-", i), "p1"))
	}
	mustPutSession(t, st, NewSession("sp1-0", "p1")) // again: replaced, not added
	check("put")
	if _, err := st.PutSessionLimit(bg, NewSession("sp1-new", "p1"), 2); err != nil {
		t.Fatal(err)
	}
	check("put with a limit")
	if _, err := st.UpdateSession(bg, "sp1-new", func(s *model.Session) error { s.Generation++; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteSession(bg, "sp2", nil); err != nil {
		t.Fatal(err)
	}
	check("update, delete")
	mustPutSession(t, st, NewSession("sp3-b", "p3"))
	if _, err := st.DeleteUserSessions(bg, "p3", "sp3-b", nil); err != nil {
		t.Fatal(err)
	}
	check("delete the user's others")
	ended := NewSession("sp4-ended", "p4")
	ended.ExpiresAt, ended.IdleExpiresAt = T0.Add(-time.Minute), T0.Add(-time.Minute)
	mustPutSession(t, st, ended)
	if n, err := st.DeleteEndedSessions(bg, T0, 10); err != nil || n != 1 {
		t.Fatalf("DeleteEndedSessions: %d, %v", n, err)
	}
	check("ended sessions swept")
	if err := st.DeleteUser(bg, "p1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteUsersIf(bg, []string{"p4"}, func(*model.User) bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	check("users deleted")
	// A session of one user put for another is refused and counts nothing.
	if err := st.PutSession(bg, NewSession("sp3-b", "p2")); err == nil {
		t.Fatal("a session moved to another user")
	}
	check("refused put")
}

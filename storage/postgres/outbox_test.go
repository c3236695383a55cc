package postgres_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/postgres"
	"github.com/guestauth/caddy-guestauth/storage/postgres/pgtest"
	"github.com/guestauth/caddy-guestauth/storage/storagetest"
)

var t0 = time.Unix(1_800_000_000, 0).UTC()

func rec(id, target string, at time.Time) storage.OutboxRecord {
	return storage.OutboxRecord{ID: id, Type: "guest.created", Target: target, Body: []byte(`{"id":"` + id + `"}`), CreatedAt: at}
}

func ids(recs []storage.OutboxRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// A claimed row is leased: no other node gets it until the lease ends,
// then another node takes it over (with the same id and body); delete
// ends it; retry makes it due again later. Lifecycle rows come before
// noisy ones, and rows of another target are never returned.
func TestOutboxClaimLeaseDelete(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := open(t, dsn, postgres.Options{})
	b := open(t, dsn, postgres.Options{})
	noisy := rec("n1", "T", t0)
	noisy.Noisy, noisy.Type = true, "signin.throttled"
	if err := a.OutboxPut(bg, []storage.OutboxRecord{noisy, rec("e2", "T", t0.Add(time.Second)), rec("e1", "T", t0), rec("other", "U", t0)}); err != nil {
		t.Fatal(err)
	}
	// Storing the same id again changes nothing (a retried put).
	if err := a.OutboxPut(bg, []storage.OutboxRecord{rec("e1", "T", t0.Add(time.Hour))}); err != nil {
		t.Fatal(err)
	}
	got, err := a.OutboxClaim(bg, "T", t0.Add(time.Minute), 30*time.Second, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"e1", "e2"}; !slices.Equal(ids(got), want) || got[0].Attempts != 1 || string(got[0].Body) != `{"id":"e1"}` || !got[0].CreatedAt.Equal(t0) {
		t.Fatalf("claimed %v (%+v); want %v, first attempt, as stored", ids(got), got, want)
	}
	// While the lease holds, the other node gets only the noisy row.
	got, err = b.OutboxClaim(bg, "T", t0.Add(time.Minute+29*time.Second), 30*time.Second, 10)
	if err != nil || !slices.Equal(ids(got), []string{"n1"}) {
		t.Fatalf("node B during the lease: %v, %v; want [n1]", ids(got), err)
	}
	for _, id := range []string{"e2", "n1"} {
		if err := a.OutboxDelete(bg, id); err != nil {
			t.Fatal(err)
		}
	}
	// Node A died holding e1: once its lease ended, B takes it over.
	got, err = b.OutboxClaim(bg, "T", t0.Add(time.Minute+31*time.Second), 30*time.Second, 10)
	if err != nil || !slices.Equal(ids(got), []string{"e1"}) || got[0].Attempts != 2 {
		t.Fatalf("node B after the lease: %+v, %v; want e1, second attempt", got, err)
	}
	if err := b.OutboxRetry(bg, "e1", t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, err = a.OutboxClaim(bg, "T", t0.Add(4*time.Minute), 30*time.Second, 10); err != nil || len(got) != 0 {
		t.Fatalf("before the retry time: %v, %v; want nothing", ids(got), err)
	}
	if got, err = a.OutboxClaim(bg, "T", t0.Add(5*time.Minute), 30*time.Second, 10); err != nil || !slices.Equal(ids(got), []string{"e1"}) {
		t.Fatalf("at the retry time: %v, %v; want [e1]", ids(got), err)
	}
	// The other target's row was never returned.
	if got, err = b.OutboxClaim(bg, "U", t0.Add(time.Hour), time.Second, 10); err != nil || !slices.Equal(ids(got), []string{"other"}) {
		t.Fatalf("target U: %v, %v", ids(got), err)
	}
}

// Two nodes claiming at once, over and over, never get the same row while
// its lease holds: every row is claimed exactly once.
func TestOutboxTwoNodesNeverShareARow(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := open(t, dsn, postgres.Options{})
	b := open(t, dsn, postgres.Options{})
	const n = 200
	recs := make([]storage.OutboxRecord, n)
	for i := range recs {
		recs[i] = rec(fmt.Sprintf("e%03d", i), "T", t0.Add(time.Duration(i)))
	}
	if err := a.OutboxPut(bg, recs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for _, node := range []*postgres.Postgres{a, b, a, b} {
		wg.Go(func() {
			for {
				got, err := node.OutboxClaim(bg, "T", t0.Add(time.Minute), time.Hour, 3)
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
		t.Fatalf("%d rows claimed; want %d", len(seen), n)
	}
	for id, c := range seen {
		if c != 1 {
			t.Fatalf("row %s claimed %d times while leased", id, c)
		}
	}
}

// Trim drops rows past the max age, then the oldest beyond the max count,
// and names their types (counted as dropped by the caller).
func TestOutboxTrim(t *testing.T) {
	dsn := pgtest.DSN(t)
	a := open(t, dsn, postgres.Options{})
	var recs []storage.OutboxRecord
	for i := range 6 {
		recs = append(recs, rec(fmt.Sprintf("e%d", i), "T", t0.Add(time.Duration(i)*time.Hour)))
	}
	recs = append(recs, rec("u", "U", t0))
	if err := a.OutboxPut(bg, recs); err != nil {
		t.Fatal(err)
	}
	types, err := a.OutboxTrim(bg, "T", t0.Add(time.Hour), 3) // e0 too old; of e1..e5, e1 and e2 too many
	if err != nil || len(types) != 3 {
		t.Fatalf("trim: %v, %v; want 3 types", types, err)
	}
	got, err := a.OutboxClaim(bg, "T", t0.Add(24*time.Hour), time.Hour, 10)
	if err != nil || !slices.Equal(ids(got), []string{"e3", "e4", "e5"}) {
		t.Fatalf("left %v, %v; want [e3 e4 e5]", ids(got), err)
	}
	if got, _ := a.OutboxClaim(bg, "U", t0.Add(24*time.Hour), time.Hour, 10); len(got) != 1 {
		t.Fatalf("another target's rows were trimmed: %v", ids(got))
	}
}

// A write whose events the database refuses to store (here a constraint
// on the outbox table: the rows are sent with COMMIT) fails, leaving
// nothing behind; a store that cannot be reached fails with
// ErrUnavailable. (The conformance suite checks the rest of storage.Events
// on every backend.)
func TestOutboxRefusedByTheDatabase(t *testing.T) {
	dsn := pgtest.DSN(t)
	p := open(t, dsn, postgres.Options{})
	calls := 0
	ev := func(r storage.TxResult) ([]storage.OutboxRecord, error) {
		calls++
		return []storage.OutboxRecord{rec(fmt.Sprint("e", calls), "T", t0)}, nil
	}
	if err := p.CreateUser(bg, storagetest.NewUser("u1", "guest_u1"), storagetest.NewSession("s1", "u1"), nil, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Pool().Exec(bg, `ALTER TABLE guestauth_outbox ADD CONSTRAINT refuse CHECK (false) NOT VALID`); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateUser(bg, storagetest.NewUser("u3", "guest_u3"), nil, nil, ev); err == nil {
		t.Fatal("a create whose events the outbox refused succeeded")
	}
	if _, err := p.GetUser(bg, "u3"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("the user was stored without its event: %v", err)
	}
	if _, err := p.UpdateUser(bg, "u1", func(u *model.User) error { u.Name = "renamed"; return nil }, ev); err == nil {
		t.Fatal("an update whose events the outbox refused succeeded")
	}
	if u, err := p.GetUser(bg, "u1"); err != nil || u.Name != "guest_u1" {
		t.Fatalf("the update was stored without its event: %+v, %v", u, err)
	}
	if _, err := p.Pool().Exec(bg, `ALTER TABLE guestauth_outbox DROP CONSTRAINT refuse`); err != nil {
		t.Fatal(err)
	}
	got, err := p.OutboxClaim(bg, "T", t0, time.Hour, 100)
	if err != nil || !slices.Equal(ids(got), []string{"e1"}) {
		t.Fatalf("outbox holds %v, %v; want only the committed write's event", ids(got), err)
	}
	p.Close()
	if err := p.CreateUser(bg, storagetest.NewUser("u4", "guest_u4"), nil, nil, ev); !errors.Is(err, model.ErrUnavailable) {
		t.Fatalf("closed store: %v; want ErrUnavailable", err)
	}
}

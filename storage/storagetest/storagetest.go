// Package storagetest is the conformance suite of storage backends: every
// backend must pass Run.
package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Run runs the suite. newStore returns a new, empty store, closed by the
// test's cleanup (newStore registers it).
func Run(t *testing.T, newStore func(t *testing.T) storage.Backend) {
	tests := []struct {
		name string
		fn   func(*testing.T, storage.Backend)
	}{
		{"CreateAndGetUser", testCreateAndGetUser},
		{"CreateUserRefusals", testCreateUserRefusals},
		{"CreateUserIsAtomic", testCreateUserIsAtomic},
		{"UniqueNameUnderConcurrency", testUniqueNameUnderConcurrency},
		{"UpdateUserMovesNameIndex", testUpdateUserMovesNameIndex},
		{"FindUsersByName", testFindUsersByName},
		{"VerifiedEmailIndex", testVerifiedEmailIndex},
		{"UniqueEmailUnderConcurrency", testUniqueEmailUnderConcurrency},
		{"VerifiedEmailKeepsUser", testVerifiedEmailKeepsUser},
		{"UpdateFunctionsRunOncePerVersion", testUpdateFunctionsRunOncePerVersion},
		{"ConcurrentUpdatesAllApply", testConcurrentUpdatesAllApply},
		{"DeleteUserRemovesEverything", testDeleteUserRemovesEverything},
		{"ListUsers", testListUsers},
		{"Identity", testIdentity},
		{"SessionUpdateAndDelete", testSessionUpdateAndDelete},
		{"PutSessionLimitEndsOldest", testPutSessionLimit},
		{"OrphanMark", testOrphanMark},
		{"DeleteEndedSessions", testDeleteEndedSessions},
		{"Devices", testDevices},
		{"ChallengeConsumedOnce", testChallengeConsumedOnce},
		{"ChallengeConcurrentConsumeHasOneWinner", testChallengeConcurrentConsume},
		{"ChallengeReissueRefused", testChallengeReissueRefused},
		{"FlowStateTakenOnce", testFlowStateTakenOnce},
		{"FlowStateKinds", testFlowStateKinds},
		{"FlowStateConcurrentTakeHasOneWinner", testFlowStateConcurrentTake},
		{"FlowStateRedeem", testFlowStateRedeem},
		{"SigningKeyCert", testSigningKeyCert},
		{"GuestCounts", testGuestCounts},
		{"TouchUsers", testTouchUsers},
		{"ScanIdleGuests", testScanIdleGuests},
		{"ScanOrphans", testScanOrphans},
		{"DeleteUsersIf", testDeleteUsersIf},
		{"SigningKeys", testSigningKeys},
		{"Stats", testStats},
		{"Backup", testBackup},
		{"DailyCounters", testDailyCounters},
		{"ListUserSessions", testListUserSessions},
		{"CountIdleGuests", testCountIdleGuests},
		{"SessionCounter", testSessionCounter},
		{"IdentityCacheFollowsWrites", testIdentityCacheFollowsWrites},
		{"IdentityCacheNeverStale", testIdentityCacheNeverStale},
		{"IdentityCacheInvalidation", testIdentityCacheInvalidation},
		{"CancelledContext", testCancelledContext},
		{"SharedLimits", testSharedLimits},
		{"SharedLimitsConcurrent", testSharedLimitsConcurrent},
		{"OutboxClaimLeaseDelete", testOutboxClaimLeaseDelete},
		{"OutboxConcurrentClaims", testOutboxConcurrentClaims},
		{"OutboxTrim", testOutboxTrim},
		{"EventsStoredWithWrites", testEventsStoredWithWrites},
		{"EventsFailTheirWrite", testEventsFailTheirWrite},
		{"Locks", testLocks},
		{"DeleteSigningKey", testDeleteSigningKey},
		{"IdentityLinks", testIdentityLinks},
		{"IdentityLinksGoWithUser", testIdentityLinksGoWithUser},
		{"IdentityLinkConcurrent", testIdentityLinkConcurrent},
		{"IdentityLinkEvents", testIdentityLinkEvents},
	}
	tests = append(tests, passkeyTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// T0 is the suite's reference time.
var T0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

var bg = context.Background()

// NewUser is a guest created at T0.
func NewUser(id, name string) *model.User {
	return &model.User{ID: id, Name: name, Tag: model.TagGuest, CreatedAt: T0, UpdatedAt: T0}
}

// NewSession is a session of userID created at T0, ending an hour later.
func NewSession(id, userID string) *model.Session {
	return &model.Session{
		ID: id, UserID: userID, ClientID: "app", AuthTime: T0, CreatedAt: T0, LastUsedAt: T0,
		ExpiresAt: T0.Add(time.Hour), IdleExpiresAt: T0.Add(time.Hour), RefreshKey: []byte("k-" + id), Generation: 1,
	}
}

func mustCreate(t *testing.T, st storage.Backend, u *model.User, s *model.Session, d *model.Device) {
	t.Helper()
	if err := st.CreateUser(bg, u, s, d, nil); err != nil {
		t.Fatalf("CreateUser(%s): %v", u.ID, err)
	}
}

func mustPutSession(t *testing.T, st storage.Backend, s *model.Session) {
	t.Helper()
	if err := st.PutSession(bg, s); err != nil {
		t.Fatalf("PutSession(%s): %v", s.ID, err)
	}
}

// mustIdentity reads (and so caches) an identity that must exist.
func mustIdentity(t *testing.T, st storage.Backend, userID, sessionID string) {
	t.Helper()
	if _, _, err := st.Identity(context.Background(), userID, sessionID); err != nil {
		t.Fatalf("Identity(%s, %s): %v", userID, sessionID, err)
	}
}

func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("%s: err = %v, want ErrNotFound", what, err)
	}
}

func getUser(t *testing.T, st storage.Backend, id string) *model.User {
	t.Helper()
	u, err := st.GetUser(bg, id)
	if err != nil {
		t.Fatalf("GetUser(%s): %v", id, err)
	}
	return u
}

func testCreateAndGetUser(t *testing.T, st storage.Backend) {
	u := NewUser("u1", "Alice")
	u.DisplayName = "Alice A."
	mustCreate(t, st, u, NewSession("s1", "u1"), nil)

	got := getUser(t, st, "u1")
	if got.ID != "u1" || got.Name != "Alice" || got.DisplayName != "Alice A." || got.Tag != model.TagGuest || !got.CreatedAt.Equal(T0) {
		t.Fatalf("GetUser = %+v", got)
	}
	if !got.IsAnonymous() {
		t.Fatal("a guest-user must be anonymous")
	}
	// Names are matched case-insensitively and after trimming.
	for _, name := range []string{"Alice", "alice", "ALICE", "  aLiCe "} {
		got, err := st.GetUserByName(bg, name)
		if err != nil || got.ID != "u1" {
			t.Fatalf("GetUserByName(%q) = %v, %v", name, got, err)
		}
	}
	_, err := st.GetUser(bg, "nobody")
	wantNotFound(t, "GetUser(missing)", err)
	_, err = st.GetUserByName(bg, "bob")
	wantNotFound(t, "GetUserByName(missing)", err)
	s, err := st.GetSession(bg, "s1")
	if err != nil || s.UserID != "u1" || s.ClientID != "app" || string(s.RefreshKey) != "k-s1" || s.Generation != 1 || !s.ExpiresAt.Equal(T0.Add(time.Hour)) {
		t.Fatalf("GetSession = %+v, %v", s, err)
	}
	// Every field survives the round trip.
	full := &model.User{ //nolint:gosec // G101: a fake hash in a fixture
		ID: "u2", Name: "Bob", DisplayName: "B", Tag: model.TagNormal, PasswordHash: "$argon2id$x",
		CreatedAt: T0, UpdatedAt: T0.Add(time.Second), DeviceKID: "kid-b", LastActiveAt: T0.Add(time.Minute), Kept: true,
	}
	mustCreate(t, st, full, nil, &model.Device{KID: "kid-b", UserID: "u2", JWK: []byte(`{}`), CreatedAt: T0})
	got = getUser(t, st, "u2")
	if got.Name != full.Name || got.DisplayName != full.DisplayName || got.Tag != full.Tag || got.PasswordHash != full.PasswordHash ||
		!got.UpdatedAt.Equal(full.UpdatedAt) || got.DeviceKID != full.DeviceKID || !got.LastActiveAt.Equal(full.LastActiveAt) || !got.Kept {
		t.Fatalf("round trip: got %+v, want %+v", got, full)
	}
}

func testCreateUserRefusals(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "Alice"), nil, nil)

	if err := st.CreateUser(bg, NewUser("u2", "aLICE"), NewSession("s2", "u2"), nil, nil); !errors.Is(err, model.ErrNameTaken) {
		t.Fatalf("name taken in another case: err = %v, want ErrNameTaken", err)
	}
	// The refused create left nothing behind.
	_, err := st.GetUser(bg, "u2")
	wantNotFound(t, "refused user", err)
	_, err = st.GetSession(bg, "s2")
	wantNotFound(t, "refused user's session", err)
	// Same id: refused, whatever the record.
	for _, other := range []*model.User{NewUser("u1", "Carol"), NewUser("u1", "Alice")} {
		if err := st.CreateUser(bg, other, nil, nil, nil); !errors.Is(err, model.ErrExists) {
			t.Fatalf("duplicate id (%s): err = %v, want ErrExists", other.Name, err)
		}
	}
	if u := getUser(t, st, "u1"); u.Name != "Alice" {
		t.Fatalf("a refused create changed the user: %+v", u)
	}
	if _, err := st.GetUserByName(bg, "carol"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("a refused create indexed its name: %v", err)
	}
	if err := st.CreateUser(bg, &model.User{ID: "u3"}, nil, nil, nil); err == nil {
		t.Fatal("a user without a name was accepted")
	}
	if err := st.PutSession(bg, NewSession("s9", "ghost")); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("PutSession for a missing user: err = %v, want ErrNotFound", err)
	}
}

// A user, its name, first session and device are written all or nothing.
func testCreateUserIsAtomic(t *testing.T, st storage.Backend) {
	u := NewUser("u1", "Alice")
	u.DeviceKID = "kid-1"
	mustCreate(t, st, u, NewSession("s1", "u1"), &model.Device{KID: "kid-1", UserID: "u1", JWK: []byte(`{}`), CreatedAt: T0})

	// The device is taken: neither the user, its name nor its session is stored.
	v := NewUser("u2", "Bob")
	v.DeviceKID = "kid-1"
	if err := st.CreateUser(bg, v, NewSession("s2", "u2"), &model.Device{KID: "kid-1", UserID: "u2", JWK: []byte(`{"x":1}`), CreatedAt: T0}, nil); !errors.Is(err, model.ErrExists) {
		t.Fatalf("device bound twice: err = %v, want ErrExists", err)
	}
	_, err := st.GetUser(bg, "u2")
	wantNotFound(t, "user of a refused create", err)
	_, err = st.GetUserByName(bg, "bob")
	wantNotFound(t, "name of a refused create", err)
	_, err = st.GetSession(bg, "s2")
	wantNotFound(t, "session of a refused create", err)
	if d, err := st.GetDevice(bg, "kid-1"); err != nil || d.UserID != "u1" || string(d.JWK) != `{}` {
		t.Fatalf("the bound device changed: %+v, %v", d, err)
	}
	// The name is taken: the new device is not stored either.
	w := NewUser("u3", "ALICE")
	w.DeviceKID = "kid-3"
	if err := st.CreateUser(bg, w, NewSession("s3", "u3"), &model.Device{KID: "kid-3", UserID: "u3", JWK: []byte(`{}`), CreatedAt: T0}, nil); !errors.Is(err, model.ErrNameTaken) {
		t.Fatalf("name taken: err = %v", err)
	}
	_, err = st.GetDevice(bg, "kid-3")
	wantNotFound(t, "device of a refused create", err)
	if live, _, err := st.GuestCounts(bg); err != nil || live != 1 {
		t.Fatalf("refused creates counted: live = %d, %v", live, err)
	}
}

// Of many concurrent claims of one name (in any case), exactly one wins.
func testUniqueNameUnderConcurrency(t *testing.T, st storage.Backend) {
	const n = 24
	var wins, taken atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			id := "c" + strconv.Itoa(i)
			name := "Shared"
			if i%2 == 1 {
				name = "sHARED"
			}
			var err error
			if i%3 == 0 { // renames race with creations
				if err = st.CreateUser(bg, NewUser(id, "tmp_"+id), nil, nil, nil); err != nil {
					t.Error(err)
					return
				}
				_, err = st.UpdateUser(bg, id, func(u *model.User) error { u.Name = name; return nil }, nil)
			} else {
				err = st.CreateUser(bg, NewUser(id, name), NewSession("s"+id, id), nil, nil)
			}
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, model.ErrNameTaken):
				taken.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins.Load() != 1 || taken.Load() != n-1 {
		t.Fatalf("%d claims won, %d refused; want exactly 1 winner", wins.Load(), taken.Load())
	}
	owner, err := st.GetUserByName(bg, "shared")
	if err != nil || model.NameKey(owner.Name) != "shared" {
		t.Fatalf("the name's owner: %+v, %v", owner, err)
	}
}

func testUpdateUserMovesNameIndex(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "guest_one"), nil, nil)
	mustCreate(t, st, NewUser("u2", "Bob"), nil, nil)

	got, err := st.UpdateUser(bg, "u1", func(u *model.User) error {
		u.Name = "Alice"
		u.Tag = model.TagNormal
		return nil
	}, nil)
	if err != nil || got.Name != "Alice" || got.Tag != model.TagNormal {
		t.Fatalf("UpdateUser = %+v, %v", got, err)
	}
	_, err = st.GetUserByName(bg, "guest_one")
	wantNotFound(t, "old name", err)
	if u, err := st.GetUserByName(bg, "alice"); err != nil || u.ID != "u1" || u.Tag != model.TagNormal {
		t.Fatalf("new name lookup = %+v, %v", u, err)
	}
	// The old name is free again.
	mustCreate(t, st, NewUser("u3", "GUEST_ONE"), nil, nil)

	// Renaming onto a taken name (any case) is refused and changes nothing.
	if _, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.Name = "BOB"; u.DisplayName = "x"; return nil }, nil); !errors.Is(err, model.ErrNameTaken) {
		t.Fatalf("rename to taken name: err = %v, want ErrNameTaken", err)
	}
	if u := getUser(t, st, "u1"); u.Name != "Alice" || u.DisplayName != "" {
		t.Fatalf("refused update was applied: %+v", u)
	}
	if u, err := st.GetUserByName(bg, "bob"); err != nil || u.ID != "u2" {
		t.Fatalf("refused rename moved the other user's name: %+v, %v", u, err)
	}
	// Changing only the case of one's own name is fine.
	if u, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.Name = "ALICE"; return nil }, nil); err != nil || u.Name != "ALICE" {
		t.Fatalf("case-only rename = %+v, %v", u, err)
	}
	if _, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.Name = "  "; return nil }, nil); err == nil {
		t.Fatal("an empty name was accepted")
	}
	if _, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.ID = "u9"; return nil }, nil); err == nil {
		t.Fatal("changing the id was accepted")
	}
	fnErr := errors.New("refused by fn")
	if _, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.DisplayName = "no"; return fnErr }, nil); !errors.Is(err, fnErr) {
		t.Fatalf("fn error not returned: %v", err)
	}
	if u := getUser(t, st, "u1"); u.DisplayName != "" {
		t.Fatalf("an update refused by fn was written: %+v", u)
	}
	_, err = st.UpdateUser(bg, "missing", func(*model.User) error { return nil }, nil)
	wantNotFound(t, "update of missing user", err)
}

// With no concurrent writer, an update function runs exactly once, even
// when other writes (some failing) share the backend's commits.
func testUpdateFunctionsRunOncePerVersion(t *testing.T, st storage.Backend) {
	const n = 16
	for i := range n {
		id := "u" + strconv.Itoa(i)
		mustCreate(t, st, NewUser(id, "name"+id), NewSession("s"+id, id), nil)
	}
	var userCalls, sessionCalls [n]atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		id := strconv.Itoa(i)
		wg.Add(3)
		go func() {
			defer wg.Done()
			<-start
			if _, err := st.UpdateUser(bg, "u"+id, func(u *model.User) error { userCalls[i].Add(1); u.DisplayName = "d"; return nil }, nil); err != nil {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			<-start
			if _, err := st.UpdateSession(bg, "su"+id, func(s *model.Session) error { sessionCalls[i].Add(1); s.Generation++; return nil }, nil); err != nil {
				t.Error(err)
			}
		}()
		go func() { // failing writes alongside
			defer wg.Done()
			<-start
			if err := st.CreateUser(bg, NewUser("x"+id, "nameu0"), nil, nil, nil); !errors.Is(err, model.ErrNameTaken) {
				t.Errorf("conflicting create: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if u, s := userCalls[i].Load(), sessionCalls[i].Load(); u != 1 || s != 1 {
			t.Fatalf("update %d: user fn ran %d times, session fn %d times; want once each", i, u, s)
		}
	}
}

// Concurrent read-modify-write updates of one record all take effect.
func testConcurrentUpdatesAllApply(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "Alice"), NewSession("s1", "u1"), nil)
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := st.UpdateSession(bg, "s1", func(s *model.Session) error { s.Generation++; return nil }, nil); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s, err := st.GetSession(bg, "s1"); err != nil || s.Generation != 1+n {
		t.Fatalf("generation after %d increments: %+v, %v", n, s, err)
	}
}

func testDeleteUserRemovesEverything(t *testing.T, st storage.Backend) {
	u := NewUser("u1", "Alice")
	u.DeviceKID = "dev-1"
	dev := &model.Device{KID: "dev-1", UserID: "u1", JWK: []byte(`{}`), CreatedAt: T0}
	mustCreate(t, st, u, NewSession("s1", "u1"), dev)
	mustPutSession(t, st, NewSession("s2", "u1"))
	mustCreate(t, st, NewUser("u2", "Bob"), NewSession("s3", "u2"), nil)

	if err := st.DeleteUser(bg, "u1", nil); err != nil {
		t.Fatal(err)
	}
	_, err := st.GetUser(bg, "u1")
	wantNotFound(t, "deleted user", err)
	_, err = st.GetUserByName(bg, "alice")
	wantNotFound(t, "deleted user's name", err)
	for _, sid := range []string{"s1", "s2"} {
		_, err := st.GetSession(bg, sid)
		wantNotFound(t, "session "+sid+" of a deleted user", err)
	}
	_, err = st.GetDevice(bg, "dev-1")
	wantNotFound(t, "device of a deleted user", err)
	if _, err := st.GetSession(bg, "s3"); err != nil {
		t.Fatalf("another user's session was deleted: %v", err)
	}
	// Name and device key are free again.
	d2 := &model.Device{KID: "dev-1", UserID: "u4", JWK: []byte(`{}`), CreatedAt: T0}
	mustCreate(t, st, NewUser("u4", "alice"), nil, d2)
	wantNotFound(t, "second delete", st.DeleteUser(bg, "u1", nil))
	// Its ended sessions are not swept later: nothing is left of them.
	if n, err := st.DeleteEndedSessions(bg, T0.Add(24*time.Hour), 100); err != nil || n != 1 {
		t.Fatalf("DeleteEndedSessions after a user delete = %d, %v; want only s3", n, err)
	}
}

func testListUsers(t *testing.T, st storage.Backend) {
	for i := range 7 {
		u := NewUser("u"+strconv.Itoa(i), "n"+strconv.Itoa(i))
		if i%2 == 1 {
			u.Tag = model.TagNormal
		}
		mustCreate(t, st, u, nil, nil)
	}
	var ids []string
	after := ""
	for pages := 0; ; pages++ {
		users, next, err := st.ListUsers(bg, after, "", 3)
		if err != nil || pages > 5 {
			t.Fatalf("ListUsers: %v after %d pages", err, pages)
		}
		for _, u := range users {
			ids = append(ids, u.ID)
		}
		if next == "" {
			break
		}
		after = next
	}
	if fmt.Sprint(ids) != "[u0 u1 u2 u3 u4 u5 u6]" {
		t.Fatalf("pages gave %v", ids)
	}
	users, next, err := st.ListUsers(bg, "", model.TagNormal, 10)
	if err != nil || next != "" || len(users) != 3 || users[0].ID != "u1" || users[2].ID != "u5" {
		t.Fatalf("normal users: %+v, %q, %v", users, next, err)
	}
	users, next, err = st.ListUsers(bg, "u4", model.TagGuest, 1)
	if err != nil || len(users) != 1 || users[0].ID != "u6" || next != "" {
		t.Fatalf("guests after u4: %+v, %q, %v", users, next, err)
	}
}

func testIdentity(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "Alice"), NewSession("s1", "u1"), nil)
	mustCreate(t, st, NewUser("u2", "Bob"), NewSession("s2", "u2"), nil)

	u, s, err := st.Identity(bg, "u1", "s1")
	if err != nil || u.ID != "u1" || u.Name != "Alice" || s.ID != "s1" || s.UserID != "u1" {
		t.Fatalf("Identity = %+v, %+v, %v", u, s, err)
	}
	for _, c := range [][2]string{{"u1", "s2"}, {"u1", "nope"}, {"nope", "s1"}} {
		_, _, err := st.Identity(bg, c[0], c[1])
		wantNotFound(t, fmt.Sprintf("Identity(%s, %s)", c[0], c[1]), err)
	}
}

func testSessionUpdateAndDelete(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "Alice"), NewSession("s1", "u1"), nil)
	for _, sid := range []string{"s2", "s3", "s4"} {
		mustPutSession(t, st, NewSession(sid, "u1"))
	}
	mustCreate(t, st, NewUser("u2", "Bob"), NewSession("t1", "u2"), nil)

	later := T0.Add(time.Minute)
	s, err := st.UpdateSession(bg, "s1", func(s *model.Session) error {
		s.Generation++
		s.LastUsedAt = later
		return nil
	}, nil)
	if err != nil || s.Generation != 2 {
		t.Fatalf("UpdateSession = %+v, %v", s, err)
	}
	if s, _ := st.GetSession(bg, "s1"); s.Generation != 2 || !s.LastUsedAt.Equal(later) {
		t.Fatalf("update not persisted: %+v", s)
	}
	// The issuer a session is bound to and its merge mark are stored,
	// and read back by both reads (Identity through the cache).
	if _, err := st.UpdateSession(bg, "s1", func(s *model.Session) error {
		s.Issuer, s.MergedFrom = "https://app.example", "g1"
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, _ := st.GetSession(bg, "s1")
		_, cached, err := st.Identity(bg, "u1", "s1")
		if err != nil || got.Issuer != "https://app.example" || cached.Issuer != got.Issuer || got.MergedFrom != "g1" || cached.MergedFrom != "g1" {
			t.Fatalf("issuer and merge mark: %+v, %+v, %v", got, cached, err)
		}
	}
	if _, err := st.UpdateSession(bg, "s1", func(s *model.Session) error { s.ID = "zz"; return nil }, nil); err == nil {
		t.Fatal("changing a session id was accepted")
	}
	if _, err := st.UpdateSession(bg, "s1", func(s *model.Session) error { s.UserID = "u2"; return nil }, nil); err == nil {
		t.Fatal("moving a session to another user was accepted")
	}
	fnErr := errors.New("refused by fn")
	if _, err := st.UpdateSession(bg, "s1", func(s *model.Session) error { s.Generation = 99; return fnErr }, nil); !errors.Is(err, fnErr) {
		t.Fatalf("fn error not returned: %v", err)
	}
	if s, _ := st.GetSession(bg, "s1"); s.Generation != 2 {
		t.Fatalf("an update refused by fn was written: %+v", s)
	}
	_, err = st.UpdateSession(bg, "missing", func(*model.Session) error { return nil }, nil)
	wantNotFound(t, "update of missing session", err)

	if err := st.DeleteSession(bg, "s2", nil); err != nil {
		t.Fatal(err)
	}
	_, err = st.GetSession(bg, "s2")
	wantNotFound(t, "deleted session", err)
	wantNotFound(t, "second delete", st.DeleteSession(bg, "s2", nil))

	// s2 is already gone, so only s3 and s4 are ended; s1 is kept.
	n, err := st.DeleteUserSessions(bg, "u1", "s1", nil)
	if err != nil || n != 2 {
		t.Fatalf("DeleteUserSessions = %d, %v; want 2", n, err)
	}
	for sid, want := range map[string]bool{"s1": true, "s3": false, "s4": false, "t1": true} {
		_, err := st.GetSession(bg, sid)
		if got := err == nil; got != want {
			t.Fatalf("session %s exists = %v, want %v (%v)", sid, got, want, err)
		}
	}
	if n, err := st.DeleteUserSessions(bg, "u1", "", nil); err != nil || n != 1 {
		t.Fatalf("DeleteUserSessions(all) = %d, %v; want 1", n, err)
	}
	_, _, err = st.Identity(bg, "u1", "s1")
	wantNotFound(t, "Identity after ending all sessions", err)
	if n, err := st.DeleteUserSessions(bg, "nobody", "", nil); err != nil || n != 0 {
		t.Fatalf("DeleteUserSessions(unknown user) = %d, %v", n, err)
	}
}

// A guest's last session ending sets OrphanedAt; a new session clears it.
// Normal users are never marked.
func testPutSessionLimit(t *testing.T, st storage.Backend) {
	ctx := context.Background()
	mustCreate(t, st, NewUser("u1", "Alice"), NewSession("s0", "u1"), nil)
	mustCreate(t, st, NewUser("u2", "Bob"), NewSession("b0", "u2"), nil)
	// s1..s4 are each a minute younger than the one before; s0 is the oldest.
	for i := 1; i <= 4; i++ {
		s := NewSession(fmt.Sprintf("s%d", i), "u1")
		s.CreatedAt = T0.Add(time.Duration(i) * time.Minute)
		n, err := st.PutSessionLimit(ctx, s, 3)
		want := min(max(0, i+1-3), 1)
		if err != nil || n != want {
			t.Fatalf("PutSessionLimit(s%d) = %d, %v; want %d ended", i, n, err, want)
		}
	}
	for sid, want := range map[string]bool{"s0": false, "s1": false, "s2": true, "s3": true, "s4": true, "b0": true} {
		if _, err := st.GetSession(ctx, sid); (err == nil) != want {
			t.Fatalf("session %s exists = %v, want %v", sid, err == nil, want)
		}
	}
	// The new session is kept even when it is not the youngest.
	old := NewSession("s-old", "u1")
	old.CreatedAt = T0.Add(-time.Hour)
	if n, err := st.PutSessionLimit(ctx, old, 3); err != nil || n != 1 {
		t.Fatalf("PutSessionLimit(s-old) = %d, %v", n, err)
	}
	if _, err := st.GetSession(ctx, "s-old"); err != nil {
		t.Fatalf("the stored session was ended: %v", err)
	}
	_, err := st.GetSession(ctx, "s2")
	wantNotFound(t, "s2 after the cap", err)
	// keep <= 0: no limit.
	if n, err := st.PutSessionLimit(ctx, NewSession("s5", "u1"), 0); err != nil || n != 0 {
		t.Fatalf("unlimited PutSessionLimit = %d, %v", n, err)
	}
	_, err = st.PutSessionLimit(ctx, NewSession("x", "nobody"), 3)
	wantNotFound(t, "a session of a missing user", err)
}

func testOrphanMark(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("g1", "g1"), NewSession("a1", "g1"), nil)
	mustPutSession(t, st, NewSession("a2", "g1"))
	normal := NewUser("n1", "n1")
	normal.Tag = model.TagNormal
	normal.PasswordHash = "$argon2id$x" // a real account: not ephemeral
	mustCreate(t, st, normal, NewSession("b1", "n1"), nil)

	if err := st.DeleteSession(bg, "a1", nil); err != nil {
		t.Fatal(err)
	}
	if u := getUser(t, st, "g1"); !u.OrphanedAt.IsZero() {
		t.Fatalf("marked orphaned with a session left: %+v", u)
	}
	if err := st.DeleteSession(bg, "a2", nil); err != nil {
		t.Fatal(err)
	}
	if u := getUser(t, st, "g1"); u.OrphanedAt.IsZero() {
		t.Fatal("last session ended: not marked orphaned")
	}
	mustPutSession(t, st, NewSession("a3", "g1"))
	if u := getUser(t, st, "g1"); !u.OrphanedAt.IsZero() {
		t.Fatalf("a new session did not clear the mark: %+v", u)
	}
	if _, err := st.DeleteUserSessions(bg, "g1", "", nil); err != nil {
		t.Fatal(err)
	}
	if u := getUser(t, st, "g1"); u.OrphanedAt.IsZero() {
		t.Fatal("DeleteUserSessions ended the last session: not marked orphaned")
	}
	if _, err := st.DeleteUserSessions(bg, "n1", "", nil); err != nil {
		t.Fatal(err)
	}
	if u := getUser(t, st, "n1"); !u.OrphanedAt.IsZero() {
		t.Fatalf("a normal user was marked orphaned: %+v", u)
	}
}

func testDeleteEndedSessions(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("g1", "g1"), nil, nil)
	mustCreate(t, st, NewUser("g2", "g2"), nil, nil)
	// Sessions ending at T0+1m .. T0+10m, by idle or absolute expiry.
	for i := 1; i <= 10; i++ {
		s := NewSession("s"+strconv.Itoa(i), "g1")
		if i%2 == 0 {
			s.ExpiresAt = T0.Add(time.Duration(i) * time.Minute)
		} else {
			s.IdleExpiresAt = T0.Add(time.Duration(i) * time.Minute)
		}
		mustPutSession(t, st, s)
	}
	live := NewSession("keep", "g2")
	live.IdleExpiresAt = T0.Add(time.Hour)
	mustPutSession(t, st, live)

	n, err := st.DeleteEndedSessions(bg, T0.Add(5*time.Minute), 3)
	if err != nil || n != 3 {
		t.Fatalf("first batch: %d, %v; want 3 (the limit)", n, err)
	}
	for i := 1; i <= 3; i++ { // oldest first
		_, err := st.GetSession(bg, "s"+strconv.Itoa(i))
		wantNotFound(t, "ended session", err)
	}
	if n, err := st.DeleteEndedSessions(bg, T0.Add(5*time.Minute), 100); err != nil || n != 2 {
		t.Fatalf("second batch: %d, %v; want 2 (s4, s5: ended at or before now)", n, err)
	}
	if _, err := st.GetSession(bg, "s6"); err != nil {
		t.Fatalf("a session not yet ended was deleted: %v", err)
	}
	// An update that moves the end is followed.
	if _, err := st.UpdateSession(bg, "s7", func(s *model.Session) error { s.IdleExpiresAt = T0.Add(2 * time.Hour); return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := st.DeleteEndedSessions(bg, T0.Add(30*time.Minute), 100); err != nil || n != 4 {
		t.Fatalf("third batch: %d, %v; want 4 (s6, s8, s9, s10)", n, err)
	}
	if u := getUser(t, st, "g1"); !u.OrphanedAt.IsZero() {
		t.Fatal("marked orphaned while s7 lives")
	}
	if n, err := st.DeleteEndedSessions(bg, T0.Add(3*time.Hour), 100); err != nil || n != 2 {
		t.Fatalf("last batch: %d, %v; want 2 (s7, keep)", n, err)
	}
	for _, id := range []string{"g1", "g2"} {
		if u := getUser(t, st, id); u.OrphanedAt.IsZero() {
			t.Fatalf("%s lost its last session to the sweep but is not marked orphaned", id)
		}
	}
}

func testDevices(t *testing.T, st storage.Backend) {
	u := &model.User{ID: "u-dev", Name: "guest_u-dev", Tag: model.TagGuest, CreatedAt: T0, UpdatedAt: T0, DeviceKID: "kid-12345678"}
	dev := &model.Device{KID: "kid-12345678", UserID: "u-dev", JWK: []byte(`{"kty":"EC"}`), CreatedAt: T0}
	mustCreate(t, st, u, nil, dev)
	got, err := st.GetDevice(bg, "kid-12345678")
	if err != nil || got.UserID != "u-dev" || string(got.JWK) != `{"kty":"EC"}` || !got.CreatedAt.Equal(T0) {
		t.Fatalf("GetDevice: %+v, %v", got, err)
	}
	_, err = st.GetDevice(bg, "kid-unknown0")
	wantNotFound(t, "unknown kid", err)
	if err := st.DeleteUser(bg, "u-dev", nil); err != nil {
		t.Fatal(err)
	}
	_, err = st.GetDevice(bg, "kid-12345678")
	wantNotFound(t, "device of a deleted user", err)
}

func putChallenge(t *testing.T, st storage.Backend, token string, created time.Time, ttl time.Duration) {
	t.Helper()
	c := model.Challenge{Purpose: "anonymous_request", CreatedAt: created, ExpiresAt: created.Add(ttl)}
	if err := st.PutChallenge(bg, token, c); err != nil {
		t.Fatal(err)
	}
}

func testChallengeConsumedOnce(t *testing.T, st storage.Backend) {
	putChallenge(t, st, "tok-a", T0, 5*time.Minute)
	c, err := st.ConsumeChallenge(bg, "tok-a", T0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if c.Purpose != "anonymous_request" || !c.ExpiresAt.Equal(T0.Add(5*time.Minute)) || !c.CreatedAt.Equal(T0) {
		t.Fatalf("consumed challenge: %+v", c)
	}
	_, err = st.ConsumeChallenge(bg, "tok-a", T0.Add(time.Minute))
	wantNotFound(t, "second consume", err)
	_, err = st.ConsumeChallenge(bg, "never-issued", T0)
	wantNotFound(t, "unknown token", err)
	// Expired: refused, and gone afterwards.
	putChallenge(t, st, "tok-b", T0, 5*time.Minute)
	_, err = st.ConsumeChallenge(bg, "tok-b", T0.Add(5*time.Minute))
	wantNotFound(t, "expired challenge", err)
	_, err = st.ConsumeChallenge(bg, "tok-b", T0)
	wantNotFound(t, "expired challenge after a refused consume", err)
	if err := st.PutChallenge(bg, "", model.Challenge{ExpiresAt: T0}); err == nil {
		t.Fatal("a challenge without a token was stored")
	}
	if err := st.PutChallenge(bg, "tok-c", model.Challenge{CreatedAt: T0}); err == nil {
		t.Fatal("a challenge without an expiry was stored")
	}
}

func testChallengeConcurrentConsume(t *testing.T, st storage.Backend) {
	for round := range 5 {
		token := fmt.Sprintf("race-%d", round)
		putChallenge(t, st, token, T0, 5*time.Minute)
		var wins, misses atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, err := st.ConsumeChallenge(bg, token, T0)
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, model.ErrNotFound):
					misses.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || misses.Load() != 15 {
			t.Fatalf("round %d: %d winners, %d refused; want exactly 1 winner", round, wins.Load(), misses.Load())
		}
	}
}

func testChallengeReissueRefused(t *testing.T, st storage.Backend) {
	putChallenge(t, st, "dup", T0, 5*time.Minute)
	for _, c := range []model.Challenge{
		{Purpose: "anonymous_request", CreatedAt: T0.Add(time.Second), ExpiresAt: T0.Add(time.Hour)},
		{Purpose: "anonymous_request", CreatedAt: T0, ExpiresAt: T0.Add(5 * time.Minute)}, // the same again
	} {
		if err := st.PutChallenge(bg, "dup", c); !errors.Is(err, model.ErrExists) {
			t.Fatalf("reissuing a live token: %v, want ErrExists", err)
		}
	}
	if c, err := st.ConsumeChallenge(bg, "dup", T0); err != nil || !c.ExpiresAt.Equal(T0.Add(5*time.Minute)) {
		t.Fatalf("the first challenge was replaced: %+v, %v", c, err)
	}
}

func counts(t *testing.T, st storage.Backend) (int64, int64) {
	t.Helper()
	live, kept, err := st.GuestCounts(bg)
	if err != nil {
		t.Fatal(err)
	}
	return live, kept
}

// GuestCounts follows every kind of write.
func testGuestCounts(t *testing.T, st storage.Backend) {
	if l, k := counts(t, st); l != 0 || k != 0 {
		t.Fatalf("empty store: %d, %d", l, k)
	}
	mustCreate(t, st, NewUser("g1", "g1"), nil, nil)
	mustCreate(t, st, NewUser("g2", "g2"), nil, nil)
	mustCreate(t, st, NewUser("g3", "g3"), nil, nil)
	n := NewUser("n1", "n1")
	n.Tag = model.TagNormal
	n.PasswordHash = "$argon2id$x" // a real account: not ephemeral
	mustCreate(t, st, n, nil, nil)
	if l, k := counts(t, st); l != 3 || k != 0 {
		t.Fatalf("after creates: %d, %d", l, k)
	}
	setKept := func(id string, kept bool) {
		if _, err := st.UpdateUser(bg, id, func(u *model.User) error { u.Kept = kept; return nil }, nil); err != nil {
			t.Fatal(err)
		}
	}
	setKept("g1", true)
	setKept("g2", true)
	if l, k := counts(t, st); l != 3 || k != 2 {
		t.Fatalf("after keeping two: %d, %d", l, k)
	}
	setKept("g2", false)
	// An upgrade leaves the guests.
	if _, err := st.UpdateUser(bg, "g1", func(u *model.User) error { u.Tag = model.TagNormal; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if l, k := counts(t, st); l != 2 || k != 0 {
		t.Fatalf("after upgrading the kept one: %d, %d", l, k)
	}
	if err := st.DeleteUser(bg, "g3", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteUsersIf(bg, []string{"g2"}, func(*model.User) bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	if l, k := counts(t, st); l != 0 || k != 0 {
		t.Fatalf("after deletes: %d, %d", l, k)
	}
}

func testTouchUsers(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("g1", "g1"), nil, nil)
	mustCreate(t, st, NewUser("g2", "g2"), nil, nil)
	t1 := T0.Add(time.Hour)
	n, err := st.TouchUsers(bg, map[string]time.Time{"g1": t1, "ghost": t1})
	if err != nil || n != 1 {
		t.Fatalf("TouchUsers = %d, %v; want 1 (ghost is unknown)", n, err)
	}
	if u := getUser(t, st, "g1"); !u.LastActiveAt.Equal(t1) || !u.ActiveAt().Equal(t1) {
		t.Fatalf("g1 after touch: %+v", u)
	}
	if u := getUser(t, st, "g2"); !u.LastActiveAt.IsZero() || !u.ActiveAt().Equal(T0) {
		t.Fatalf("g2 was touched: %+v", u)
	}
	n, err = st.TouchUsers(bg, map[string]time.Time{"g1": t1, "g2": T0.Add(time.Minute)})
	if err != nil || n != 1 {
		t.Fatalf("TouchUsers = %d, %v; want 1 (g1's time is not newer)", n, err)
	}
	if n, err := st.TouchUsers(bg, map[string]time.Time{"g1": T0.Add(30 * time.Minute)}); err != nil || n != 0 {
		t.Fatalf("an older time = %d, %v; want 0", n, err)
	}
	if u := getUser(t, st, "g1"); !u.LastActiveAt.Equal(t1) {
		t.Fatalf("an older touch moved g1 back: %+v", u)
	}
	if _, err := st.GetUser(bg, "ghost"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("TouchUsers created a user: %v", err)
	}
}

func scanIdle(t *testing.T, st storage.Backend, before time.Time, max int) []string {
	t.Helper()
	var ids []string
	err := st.ScanIdleGuests(bg, before, func(u *model.User) bool {
		ids = append(ids, u.ID)
		return len(ids) < max
	})
	if err != nil {
		t.Fatal(err)
	}
	// CountIdleGuests counts what a full scan visits.
	if n, err := st.CountIdleGuests(bg, before); err != nil || (len(ids) < max && n != int64(len(ids))) {
		t.Fatalf("CountIdleGuests(%v) = %d, %v; the scan visited %v", before, n, err, ids)
	}
	return ids
}

// ScanIdleGuests: unkept guests active before the time, oldest first, and
// it follows activity, keeping, upgrades and deletes.
func testScanIdleGuests(t *testing.T, st storage.Backend) {
	for i := range 5 {
		u := NewUser("g"+strconv.Itoa(i), "g"+strconv.Itoa(i))
		u.CreatedAt = T0.Add(time.Duration(5-i) * time.Minute) // g4 oldest
		mustCreate(t, st, u, nil, nil)
	}
	n := NewUser("n1", "n1")
	n.Tag = model.TagNormal
	n.PasswordHash = "$argon2id$x" // a real account: not ephemeral
	mustCreate(t, st, n, nil, nil)
	k := NewUser("k1", "k1")
	k.Kept = true
	mustCreate(t, st, k, nil, nil)

	if got := fmt.Sprint(scanIdle(t, st, T0.Add(time.Hour), 100)); got != "[g4 g3 g2 g1 g0]" {
		t.Fatalf("idle guests: %s", got)
	}
	if got := fmt.Sprint(scanIdle(t, st, T0.Add(3*time.Minute), 100)); got != "[g4 g3]" {
		t.Fatalf("idle before T0+3m: %s (the bound is exclusive)", got)
	}
	if got := fmt.Sprint(scanIdle(t, st, T0.Add(time.Hour), 2)); got != "[g4 g3]" {
		t.Fatalf("stopped after two: %s", got)
	}
	if _, err := st.TouchUsers(bg, map[string]time.Time{"g4": T0.Add(30 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateUser(bg, "g3", func(u *model.User) error { u.Kept = true; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	// A name-only upgrade leaves an ephemeral user (no password) in the
	// index; setting a password takes it out.
	if _, err := st.UpdateUser(bg, "g2", func(u *model.User) error { u.Tag = model.TagNormal; u.Name = "up"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(scanIdle(t, st, T0.Add(time.Hour), 100)); got != "[g2 g1 g0 g4]" {
		t.Fatalf("after touch, keep and a name-only upgrade: %s", got)
	}
	if _, err := st.UpdateUser(bg, "g2", func(u *model.User) error { u.PasswordHash = "$argon2id$x"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteUser(bg, "g1", nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(scanIdle(t, st, T0.Add(time.Hour), 100)); got != "[g0 g4]" {
		t.Fatalf("after touch, keep, upgrade and delete: %s", got)
	}
	if _, err := st.UpdateUser(bg, "k1", func(u *model.User) error { u.Kept = false; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(scanIdle(t, st, T0.Add(time.Hour), 100)); got != "[k1 g0 g4]" {
		t.Fatalf("after unkeeping k1: %s", got)
	}
}

func scanOrphans(t *testing.T, st storage.Backend) map[string]bool {
	t.Helper()
	ids := map[string]bool{}
	if err := st.ScanOrphans(bg, func(u *model.User) bool { ids[u.ID] = true; return true }); err != nil {
		t.Fatal(err)
	}
	return ids
}

// ScanOrphans: unkept guests without a device whose last session ended.
func testScanOrphans(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("o1", "o1"), NewSession("s1", "o1"), nil)
	mustCreate(t, st, NewUser("o2", "o2"), NewSession("s2", "o2"), nil)
	d := NewUser("d1", "d1")
	d.DeviceKID = "kid-d1"
	mustCreate(t, st, d, NewSession("s3", "d1"), &model.Device{KID: "kid-d1", UserID: "d1", JWK: []byte(`{}`), CreatedAt: T0})
	k := NewUser("k1", "k1")
	k.Kept = true
	mustCreate(t, st, k, NewSession("s4", "k1"), nil)
	n := NewUser("n1", "n1")
	n.Tag = model.TagNormal
	n.PasswordHash = "$argon2id$x" // a real account: not ephemeral
	mustCreate(t, st, n, NewSession("s5", "n1"), nil)
	if got := scanOrphans(t, st); len(got) != 0 {
		t.Fatalf("orphans while every user has a session: %v", got)
	}
	for _, s := range []string{"s1", "s2", "s3", "s4", "s5"} {
		if err := st.DeleteSession(bg, s, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(scanOrphans(t, st)); got != "map[o1:true o2:true]" {
		t.Fatalf("orphans: %s", got)
	}
	var first []string
	if err := st.ScanOrphans(bg, func(u *model.User) bool { first = append(first, u.ID); return false }); err != nil || len(first) != 1 {
		t.Fatalf("a scan told to stop went on: %v, %v", first, err)
	}
	mustPutSession(t, st, NewSession("s6", "o1"))
	if _, err := st.UpdateUser(bg, "o2", func(u *model.User) error { u.Kept = true; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if got := scanOrphans(t, st); len(got) != 0 {
		t.Fatalf("orphans after a new session and a keep: %v", got)
	}
	if _, err := st.UpdateUser(bg, "o2", func(u *model.User) error { u.Kept = false; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(scanOrphans(t, st)); got != "map[o2:true]" {
		t.Fatalf("orphans after unkeeping o2: %s", got)
	}
}

func testDeleteUsersIf(t *testing.T, st storage.Backend) {
	for _, id := range []string{"a", "b", "c"} {
		mustCreate(t, st, NewUser(id, "name-"+id), NewSession("s-"+id, id), nil)
	}
	n := NewUser("n", "name-n")
	n.Tag = model.TagNormal
	mustCreate(t, st, n, NewSession("s-n", "n"), nil)
	var seen []string
	deleted, err := st.DeleteUsersIf(bg, []string{"a", "b", "ghost", "n"}, func(u *model.User) bool {
		seen = append(seen, u.ID)
		return u.ID != "b"
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(deleted) != 2 || deleted[0].ID != "a" || deleted[1].ID != "n" || deleted[0].Name != "name-a" {
		t.Fatalf("deleted %+v; want a and n (the store adds no rule of its own)", deleted)
	}
	if fmt.Sprint(seen) != "[a b n]" {
		t.Fatalf("pred saw %v", seen)
	}
	for id, want := range map[string]bool{"a": false, "b": true, "c": true, "n": false} {
		_, err := st.GetUser(bg, id)
		if got := err == nil; got != want {
			t.Fatalf("user %s exists = %v, want %v", id, got, want)
		}
	}
	_, err = st.GetSession(bg, "s-a")
	wantNotFound(t, "session of a deleted user", err)
	_, err = st.GetUserByName(bg, "name-a")
	wantNotFound(t, "name of a deleted user", err)
	// pred sees the current record.
	if _, err := st.UpdateUser(bg, "c", func(u *model.User) error { u.Kept = true; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	deleted, err = st.DeleteUsersIf(bg, []string{"c"}, func(u *model.User) bool { return !u.Kept }, nil)
	if err != nil || len(deleted) != 0 {
		t.Fatalf("pred was not given the current record: %+v, %v", deleted, err)
	}
}

func testSigningKeys(t *testing.T, st storage.Backend) {
	if keys, err := st.SigningKeys(bg); err != nil || len(keys) != 0 {
		t.Fatalf("empty store keys: %v, %v", keys, err)
	}
	newer := model.SigningKey{KID: "k2", Alg: "ES256", CreatedAt: T0.Add(time.Hour), JWK: []byte(`{"kty":"EC"}`)}
	older := model.SigningKey{KID: "k1", Alg: "RS256", CreatedAt: T0, JWK: []byte(`{"kty":"RSA"}`)}
	for _, k := range []model.SigningKey{newer, older} {
		if err := st.AddSigningKey(bg, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.AddSigningKey(bg, older); !errors.Is(err, model.ErrExists) {
		t.Fatalf("duplicate kid: err = %v, want ErrExists", err)
	}
	keys, err := st.SigningKeys(bg)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].KID != "k1" || keys[1].KID != "k2" {
		t.Fatalf("keys (want k1, k2 oldest first): %+v", keys)
	}
	if keys[0].Alg != "RS256" || string(keys[0].JWK) != `{"kty":"RSA"}` || !keys[1].CreatedAt.Equal(newer.CreatedAt) {
		t.Fatalf("key contents changed: %+v", keys)
	}
}

func testStats(t *testing.T, st storage.Backend) {
	s0, err := st.Stats(bg)
	if err != nil {
		t.Fatal(err)
	}
	if s0.Users != 0 || s0.Sessions != 0 || s0.LiveGuests != 0 || s0.Path != st.Describe() {
		t.Fatalf("empty store stats: %+v", s0)
	}
	mustCreate(t, st, NewUser("g1", "guest_g1"), NewSession("s1", "g1"), nil)
	mustCreate(t, st, NewUser("g2", "guest_g2"), NewSession("s2", "g2"), nil)
	normal := NewUser("n1", "alice")
	normal.Tag = model.TagNormal
	normal.PasswordHash = "$argon2id$x" // a real account: not ephemeral
	mustCreate(t, st, normal, NewSession("s3", "n1"), nil)
	mustPutSession(t, st, NewSession("s4", "n1"))
	if _, err := st.UpdateUser(bg, "g2", func(u *model.User) error { u.Kept = true; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	s1, err := st.Stats(bg)
	if err != nil {
		t.Fatal(err)
	}
	want := storage.Stats{Path: st.Describe(), Users: 3, NormalUsers: 1, LiveGuests: 2, KeptGuests: 1, Sessions: 4}
	got := *s1
	got.FileSize, got.DataSize = 0, 0
	if got != want {
		t.Fatalf("stats = %+v, want %+v", got, want)
	}
}

func testBackup(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("g1", "guest_g1"), NewSession("s1", "g1"), nil)
	var buf bytes.Buffer
	var announced int64 = -1
	n, err := st.Backup(bg, &buf, func(size int64) { announced = size })
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 || n != int64(buf.Len()) || announced != n {
		t.Fatalf("wrote %d bytes, buffer %d, announced %d", n, buf.Len(), announced)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	if _, err := st.Backup(ctx, &bytes.Buffer{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("backup with a cancelled context: %v", err)
	}
}

func testIdentityCacheFollowsWrites(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "ann"), NewSession("s1", "u1"), nil)
	if _, _, err := st.Identity(bg, "u1", "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.Tag = model.TagNormal; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if u, _, _ := st.Identity(bg, "u1", "s1"); u.Tag != model.TagNormal {
		t.Fatalf("cached user survived an update: %+v", u)
	}
	if _, err := st.UpdateSession(bg, "s1", func(s *model.Session) error { s.Generation = 7; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if _, s, _ := st.Identity(bg, "u1", "s1"); s.Generation != 7 {
		t.Fatalf("cached session survived an update: %+v", s)
	}
	// An activity flush raises the cached user's time in place: it neither
	// leaves the old time nor empties the cache (each active user's next
	// request would read the store again).
	mustIdentity(t, st, "u1", "s1")
	cached := st.IdentityCache().Len()
	if _, err := st.TouchUsers(bg, map[string]time.Time{"u1": T0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if n := st.IdentityCache().Len(); n != cached {
		t.Fatalf("a touch changed the cached users from %d to %d", cached, n)
	}
	if u, _, _ := st.Identity(bg, "u1", "s1"); !u.LastActiveAt.Equal(T0.Add(time.Hour)) {
		t.Fatalf("cached user kept its old time after a touch: %+v", u)
	}
	// A session of another user is never paired with this one.
	mustCreate(t, st, NewUser("u2", "bob"), NewSession("s2", "u2"), nil)
	mustIdentity(t, st, "u2", "s2") // cached
	_, _, err := st.Identity(bg, "u1", "s2")
	wantNotFound(t, "mismatched pair", err)
	if err := st.DeleteSession(bg, "s1", nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Identity(bg, "u1", "s1")
	wantNotFound(t, "deleted session", err)
	if err := st.DeleteUser(bg, "u2", nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Identity(bg, "u2", "s2")
	wantNotFound(t, "deleted user", err)
	// The sweep and a bulk delete are followed too.
	mustCreate(t, st, NewUser("u3", "cy"), NewSession("s3", "u3"), nil)
	mustCreate(t, st, NewUser("u4", "di"), NewSession("s4", "u4"), nil)
	mustIdentity(t, st, "u3", "s3") // cached
	mustIdentity(t, st, "u4", "s4")
	if _, err := st.DeleteEndedSessions(bg, T0.Add(2*time.Hour), 100); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Identity(bg, "u3", "s3")
	wantNotFound(t, "swept session", err)
	mustPutSession(t, st, NewSession("s5", "u4"))
	mustIdentity(t, st, "u4", "s5") // cached
	if _, err := st.DeleteUsersIf(bg, []string{"u4"}, func(*model.User) bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Identity(bg, "u4", "s5")
	wantNotFound(t, "user deleted by DeleteUsersIf", err)
}

// Readers never see a value older than one whose write had finished before
// they started, however reads and writes interleave.
func testIdentityCacheNeverStale(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "cat"), NewSession("s1", "u1"), nil)
	var committed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stale atomic.Int64
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				want := committed.Load()
				u, _, err := st.Identity(bg, "u1", "s1")
				if err != nil {
					t.Error(err)
					return
				}
				if got, _ := strconv.ParseInt(u.DisplayName, 10, 64); got < want {
					stale.Add(1)
				}
			}
		}()
	}
	for i := int64(1); i <= 300; i++ {
		if _, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.DisplayName = strconv.FormatInt(i, 10); return nil }, nil); err != nil {
			t.Fatal(err)
		}
		committed.Store(i)
	}
	close(stop)
	wg.Wait()
	if n := stale.Load(); n > 0 {
		t.Fatalf("%d reads returned a value older than a finished write", n)
	}
}

// The cache's invalidation interface, which a shared store drives from
// other processes' writes, drops what it names: the next Identity reads
// the store again (a new value, not the cached one).
func testIdentityCacheInvalidation(t *testing.T, st storage.Backend) {
	c := st.IdentityCache()
	if c == nil {
		t.Fatal("IdentityCache is nil")
	}
	mustCreate(t, st, NewUser("u1", "ann"), NewSession("s1", "u1"), nil)
	read := func() (*model.User, *model.Session) {
		t.Helper()
		u, s, err := st.Identity(bg, "u1", "s1")
		if err != nil {
			t.Fatal(err)
		}
		return u, s
	}
	u1, s1 := read()
	if u, s := read(); u != u1 || s != s1 {
		t.Skip("this backend's Identity does not cache")
	}
	if c.Len() != 1 {
		t.Fatalf("cache holds %d users, want 1", c.Len())
	}
	c.InvalidateUser("u1")
	u2, s2 := read()
	if u2 == u1 {
		t.Fatal("InvalidateUser did not drop the user")
	}
	if u, s := read(); u != u2 || s != s2 {
		t.Fatal("the pair read after the invalidation was not cached")
	}
	c.InvalidateSession("s1")
	u3, s3 := read()
	if s3 == s2 {
		t.Fatal("InvalidateSession did not drop the session")
	}
	c.InvalidateAll()
	if c.Len() != 0 {
		t.Fatalf("InvalidateAll left %d users", c.Len())
	}
	if u4, s4 := read(); u4 == u3 || s4 == s3 {
		t.Fatal("InvalidateAll did not drop the pair")
	}
	// A read that overlaps an invalidation is not cached: it may have seen
	// the record before the other process's write.
	before := c.Snapshot()
	c.InvalidateUser("u9")
	c.Put(before, &model.User{ID: "u9"}, &model.Session{ID: "s9", UserID: "u9"})
	if _, _, ok := c.Get("u9", "s9"); ok {
		t.Fatal("a read overlapping an invalidation was cached")
	}
}

// No method starts work for a cancelled context.
func testCancelledContext(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "ann"), NewSession("s1", "u1"), nil)
	if _, _, err := st.Identity(bg, "u1", "s1"); err != nil { // cached, if the backend caches
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	cancel()
	calls := map[string]error{}
	calls["CreateUser"] = st.CreateUser(ctx, NewUser("u2", "bob"), nil, nil, nil)
	_, calls["GetUser"] = st.GetUser(ctx, "u1")
	_, calls["GetUserByName"] = st.GetUserByName(ctx, "ann")
	_, calls["UpdateUser"] = st.UpdateUser(ctx, "u1", func(u *model.User) error { u.DisplayName = "x"; return nil }, nil)
	_, _, calls["ListUsers"] = st.ListUsers(ctx, "", "", 10)
	_, _, calls["Identity"] = st.Identity(ctx, "u1", "s1")
	_, calls["GetSession"] = st.GetSession(ctx, "s1")
	_, calls["UpdateSession"] = st.UpdateSession(ctx, "s1", func(s *model.Session) error { s.Generation = 9; return nil }, nil)
	calls["PutSession"] = st.PutSession(ctx, NewSession("s2", "u1"))
	calls["DeleteSession"] = st.DeleteSession(ctx, "s1", nil)
	_, calls["DeleteUserSessions"] = st.DeleteUserSessions(ctx, "u1", "", nil)
	_, calls["DeleteEndedSessions"] = st.DeleteEndedSessions(ctx, T0.Add(24*time.Hour), 10)
	_, calls["GetDevice"] = st.GetDevice(ctx, "kid")
	calls["PutChallenge"] = st.PutChallenge(ctx, "tok", model.Challenge{CreatedAt: T0, ExpiresAt: T0.Add(time.Hour)})
	_, calls["ConsumeChallenge"] = st.ConsumeChallenge(ctx, "tok", T0)
	calls["PutFlowState"] = st.PutFlowState(ctx, "code", "h", model.FlowState{CreatedAt: T0, ExpiresAt: T0.Add(time.Hour), Data: []byte(`{}`)})
	_, calls["GetFlowState"] = st.GetFlowState(ctx, "code", "h", T0)
	_, calls["TakeFlowState"] = st.TakeFlowState(ctx, "code", "h", T0)
	_, _, calls["RedeemFlowState"] = st.RedeemFlowState(ctx, "code", "h", T0, 0, func(*model.FlowState) (*model.Session, error) { return NewSession("s9", "u1"), nil })
	calls["SetSigningKeyCert"] = st.SetSigningKeyCert(ctx, "k", []byte{1})
	_, _, calls["GuestCounts"] = st.GuestCounts(ctx)
	_, calls["TouchUsers"] = st.TouchUsers(ctx, map[string]time.Time{"u1": T0.Add(time.Hour)})
	calls["ScanIdleGuests"] = st.ScanIdleGuests(ctx, T0.Add(time.Hour), func(*model.User) bool { return true })
	calls["ScanOrphans"] = st.ScanOrphans(ctx, func(*model.User) bool { return true })
	_, calls["DeleteUsersIf"] = st.DeleteUsersIf(ctx, []string{"u1"}, func(*model.User) bool { return true }, nil)
	_, calls["SigningKeys"] = st.SigningKeys(ctx)
	calls["AddSigningKey"] = st.AddSigningKey(ctx, model.SigningKey{KID: "k", CreatedAt: T0})
	_, calls["Stats"] = st.Stats(ctx)
	calls["DeleteSigningKey"] = st.DeleteSigningKey(ctx, "k")
	ran := false
	calls["LockSigningKeys"] = st.LockSigningKeys(ctx, func(context.Context) error { ran = true; return nil })
	_, calls["TryLockSweep"] = st.TryLockSweep(ctx, "guests", func(context.Context) error { ran = true; return nil })
	_, calls["LimitTake"] = st.LimitTake(ctx, "l", "k", 1, time.Minute, T0)
	calls["LimitRefund"] = st.LimitRefund(ctx, "l", "k", time.Minute)
	calls["LimitReset"] = st.LimitReset(ctx, "l", "k")
	calls["OutboxPut"] = st.OutboxPut(ctx, []storage.OutboxRecord{outboxRec("e", "T", T0)})
	_, calls["OutboxClaim"] = st.OutboxClaim(ctx, "T", T0, time.Minute, 1)
	calls["OutboxDelete"] = st.OutboxDelete(ctx, "e")
	calls["OutboxRetry"] = st.OutboxRetry(ctx, "e", T0)
	_, calls["OutboxTrim"] = st.OutboxTrim(ctx, "T", T0, 1)
	_, calls["OutboxLen"] = st.OutboxLen(ctx, "T")
	if ran {
		t.Error("a lock ran its function for a cancelled context")
	}
	calls["DeleteUser"] = st.DeleteUser(ctx, "u1", nil)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", name, err)
		}
	}
	// Nothing was written.
	u, s, err := st.Identity(bg, "u1", "s1")
	if err != nil || u.DisplayName != "" || !u.LastActiveAt.IsZero() || s.Generation != 1 {
		t.Fatalf("a cancelled call wrote: %+v %+v %v", u, s, err)
	}
	if _, err := st.GetUser(bg, "u2"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("a cancelled create wrote: %v", err)
	}
	if got := claimAll(t, st, "T"); len(got) != 0 {
		t.Fatalf("a cancelled put wrote %v", got)
	}
}

// Name-prefix search: by NameKey (case folded), in NameKey order, up to
// the limit; "_" in a prefix is a character, not a wildcard; a renamed
// user is found by its new name only.
func testFindUsersByName(t *testing.T, st storage.Backend) {
	for i, name := range []string{"alice", "Alicia", "al_bert", "alxbert", "bob", "guest_x"} {
		mustCreate(t, st, NewUser(fmt.Sprintf("u%d", i), name), nil, nil)
	}
	names := func(prefix string, limit int) string {
		t.Helper()
		users, err := st.FindUsersByName(bg, prefix, limit)
		if err != nil {
			t.Fatalf("FindUsersByName(%q, %d): %v", prefix, limit, err)
		}
		var out []string
		for _, u := range users {
			out = append(out, u.Name)
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct {
		prefix string
		limit  int
		want   string
	}{
		{"ali", 10, "alice,Alicia"},
		{"ALI", 10, "alice,Alicia"},
		{"al_", 10, "al_bert"},
		{"AL", 2, "al_bert,alice"},
		{"al", 10, "al_bert,alice,Alicia,alxbert"},
		{"zz", 10, ""},
		{"alice", 10, "alice"},
		{"alicex", 10, ""},
	} {
		if got := names(c.prefix, c.limit); got != c.want {
			t.Errorf("FindUsersByName(%q, %d) = %q, want %q", c.prefix, c.limit, got, c.want)
		}
	}
	if _, err := st.UpdateUser(bg, "u4", func(u *model.User) error { u.Name = "robert"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if got := names("bo", 10); got != "" {
		t.Errorf("the old name still found: %q", got)
	}
	if got := names("rob", 10); got != "robert" {
		t.Errorf("the new name: %q", got)
	}
}

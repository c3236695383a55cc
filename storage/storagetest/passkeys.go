package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// passkeyTests are the passkey part of the suite (Run runs them).
var passkeyTests = []struct {
	name string
	fn   func(*testing.T, storage.Backend)
}{
	{"Passkeys", testPasskeys},
	{"PasskeyAddIsAtomic", testPasskeyAddIsAtomic},
	{"PasskeyLastOneUnderConcurrency", testPasskeyLastOne},
	{"PasskeysGoWithTheirUser", testPasskeysGoWithUser},
	{"PasskeysCancelledContext", testPasskeysCancelled},
}

func newPasskey(id, userID string, created time.Time, signCount int) *model.Passkey {
	cred, _ := json.Marshal(map[string]any{
		"id": id, "publicKey": "pQECAyYgASFYIA", "flags": map[string]bool{"backupEligible": true, "backupState": true},
		"authenticator": map[string]any{"signCount": signCount},
	})
	return &model.Passkey{ID: id, UserID: userID, Name: "key " + id, CreatedAt: created, Credential: cred}
}

// signCount reads the counter back out of a passkey's credential, as the
// accounts package stores it: the store must keep the record whole.
func signCount(t *testing.T, p *model.Passkey) int {
	t.Helper()
	var c struct {
		Flags struct {
			BackupEligible bool `json:"backupEligible"`
			BackupState    bool `json:"backupState"`
		} `json:"flags"`
		Authenticator struct {
			SignCount int `json:"signCount"`
		} `json:"authenticator"`
	}
	if err := json.Unmarshal(p.Credential, &c); err != nil {
		t.Fatalf("credential %s: %v", p.Credential, err)
	}
	if !c.Flags.BackupEligible || !c.Flags.BackupState {
		t.Fatalf("credential %s lost its backup flags", p.Credential)
	}
	return c.Authenticator.SignCount
}

func mustAddPasskey(t *testing.T, st storage.Backend, p *model.Passkey, fn func(u *model.User) error) *model.User {
	t.Helper()
	u, err := st.AddPasskey(bg, p, fn, nil)
	if err != nil {
		t.Fatalf("AddPasskey %s: %v", p.ID, err)
	}
	return u
}

func passkeyIDs(t *testing.T, st storage.Backend, userID string) []string {
	t.Helper()
	ps, err := st.ListPasskeys(bg, userID)
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{}
	for _, p := range ps {
		if p.UserID != userID {
			t.Fatalf("ListPasskeys(%s) returned %s's passkey %s", userID, p.UserID, p.ID)
		}
		ids = append(ids, p.ID)
	}
	return ids
}

var errLastWayIn = errors.New("the last way to sign in")

func keepOneWayIn(u *model.User) error {
	if u.Passkeys == 0 && u.PasswordHash == "" {
		return errLastWayIn
	}
	return nil
}

// A guest saved with a passkey becomes a member in the same write: the
// tag, the count and the passkey together; the passkey keeps its
// credential whole; it is listed oldest first, updated in place, and
// removed only as its user's and only past the caller's check.
func testPasskeys(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "guest_u1"), NewSession("s1", "u1"), nil)
	mustCreate(t, st, NewUser("u2", "guest_u2"), nil, nil)
	var calls int
	u, err := st.AddPasskey(bg, newPasskey("pkB", "u1", T0.Add(time.Minute), 1), func(u *model.User) error {
		u.Tag = model.TagNormal
		return nil
	}, eventsOf("passkey", &calls))
	if err != nil || u.Tag != model.TagNormal || u.Passkeys != 1 || u.Ephemeral() {
		t.Fatalf("AddPasskey: %+v, %v; want a normal user with one passkey, not ephemeral", u, err)
	}
	if got := getUser(t, st, "u1"); got.Tag != model.TagNormal || got.Passkeys != 1 {
		t.Fatalf("stored user after AddPasskey: %+v", got)
	}
	if live, _ := counts(t, st); live != 1 {
		t.Fatalf("live guests %d after the upgrade, want 1", live)
	}
	if idle := scanIdle(t, st, T0.Add(1000*time.Hour), 10); slices.Contains(idle, "u1") {
		t.Fatalf("a member with a passkey is scanned as idle: %v", idle)
	}
	if got := claimAll(t, st, "T"); !slices.Equal(got, []string{"passkey:done"}) {
		t.Fatalf("outbox after AddPasskey: %v", got)
	}
	mustAddPasskey(t, st, newPasskey("pkA", "u1", T0.Add(2*time.Minute), 5), nil)
	mustAddPasskey(t, st, newPasskey("pkC", "u1", T0.Add(time.Minute), 0), nil)
	if got := passkeyIDs(t, st, "u1"); !slices.Equal(got, []string{"pkB", "pkC", "pkA"}) {
		t.Fatalf("ListPasskeys = %v, want by creation then id [pkB pkC pkA]", got)
	}
	if got := passkeyIDs(t, st, "u2"); len(got) != 0 {
		t.Fatalf("ListPasskeys of a user without any = %v", got)
	}
	if got := getUser(t, st, "u1"); got.Passkeys != 3 {
		t.Fatalf("Passkeys = %d, want 3", got.Passkeys)
	}
	p, err := st.GetPasskey(bg, "pkA")
	if err != nil || p.UserID != "u1" || p.Name != "key pkA" || !p.CreatedAt.Equal(T0.Add(2*time.Minute)) || signCount(t, p) != 5 {
		t.Fatalf("GetPasskey: %+v, %v", p, err)
	}
	_, err = st.GetPasskey(bg, "nope")
	wantNotFound(t, "unknown passkey", err)

	// A credential id is unique across users.
	if _, err := st.AddPasskey(bg, newPasskey("pkA", "u2", T0, 0), nil, nil); !errors.Is(err, model.ErrExists) {
		t.Fatalf("AddPasskey of a stored id for another user: %v, want ErrExists", err)
	}
	if got := getUser(t, st, "u2"); got.Passkeys != 0 || got.Tag != model.TagGuest {
		t.Fatalf("a refused AddPasskey wrote the user: %+v", got)
	}
	if _, err := st.AddPasskey(bg, newPasskey("pkZ", "nobody", T0, 0), nil, nil); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("AddPasskey for an unknown user: %v, want ErrNotFound", err)
	}

	// Update: the counter and the last use, nothing else.
	up, err := st.UpdatePasskey(bg, "pkA", func(p *model.Passkey) error {
		p.Credential = newPasskey("pkA", "u1", T0, 6).Credential
		p.LastUsedAt = T0.Add(time.Hour)
		return nil
	})
	if err != nil || signCount(t, up) != 6 {
		t.Fatalf("UpdatePasskey: %+v, %v", up, err)
	}
	if p, _ := st.GetPasskey(bg, "pkA"); p == nil || signCount(t, p) != 6 || !p.LastUsedAt.Equal(T0.Add(time.Hour)) || p.Name != "key pkA" {
		t.Fatalf("after UpdatePasskey: %+v", p)
	}
	boom := errors.New("boom")
	if _, err := st.UpdatePasskey(bg, "pkA", func(p *model.Passkey) error { p.Name = "x"; return boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdatePasskey with a failing fn: %v", err)
	}
	if _, err := st.UpdatePasskey(bg, "pkA", func(p *model.Passkey) error { p.UserID = "u2"; return nil }); err == nil {
		t.Fatal("UpdatePasskey moved a passkey to another user")
	}
	if p, _ := st.GetPasskey(bg, "pkA"); p == nil || p.Name != "key pkA" || p.UserID != "u1" {
		t.Fatalf("a refused UpdatePasskey wrote: %+v", p)
	}
	_, err = st.UpdatePasskey(bg, "nope", func(*model.Passkey) error { return nil })
	wantNotFound(t, "UpdatePasskey of an unknown id", err)

	// Delete: only its own user's; the check sees the user after.
	err = st.DeletePasskey(bg, "u2", "pkA", nil, nil)
	wantNotFound(t, "DeletePasskey of another user's passkey", err)
	var seen int
	err = st.DeletePasskey(bg, "u1", "pkA", func(u *model.User) error { seen = u.Passkeys; return boom }, nil)
	if !errors.Is(err, boom) || seen != 2 {
		t.Fatalf("DeletePasskey with a refusing check: %v (check saw %d passkeys, want 2)", err, seen)
	}
	if got := passkeyIDs(t, st, "u1"); len(got) != 3 || getUser(t, st, "u1").Passkeys != 3 {
		t.Fatalf("a refused DeletePasskey wrote: %v", got)
	}
	if err := st.DeletePasskey(bg, "u1", "pkA", keepOneWayIn, eventsOf("unpasskey", &calls)); err != nil {
		t.Fatal(err)
	}
	if got := passkeyIDs(t, st, "u1"); !slices.Equal(got, []string{"pkB", "pkC"}) || getUser(t, st, "u1").Passkeys != 2 {
		t.Fatalf("after DeletePasskey: %v, count %d", got, getUser(t, st, "u1").Passkeys)
	}
	_, err = st.GetPasskey(bg, "pkA")
	wantNotFound(t, "a deleted passkey", err)
	if got := claimAll(t, st, "T"); !slices.Equal(got, []string{"unpasskey:done"}) {
		t.Fatalf("outbox after DeletePasskey: %v", got)
	}
	// A deleted id may be registered again.
	mustAddPasskey(t, st, newPasskey("pkA", "u2", T0, 0), nil)
}

// A refusal of AddPasskey's function, or of a name the user cannot take,
// writes neither the passkey nor the user.
func testPasskeyAddIsAtomic(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "guest_u1"), nil, nil)
	mustCreate(t, st, NewUser("u2", "ann"), nil, nil)
	boom := errors.New("boom")
	if _, err := st.AddPasskey(bg, newPasskey("pk1", "u1", T0, 0), func(u *model.User) error { u.Tag = model.TagNormal; return boom }, nil); !errors.Is(err, boom) {
		t.Fatalf("AddPasskey with a failing fn: %v", err)
	}
	if _, err := st.AddPasskey(bg, newPasskey("pk1", "u1", T0, 0), func(u *model.User) error { u.Name = "ANN"; return nil }, nil); !errors.Is(err, model.ErrNameTaken) {
		t.Fatalf("AddPasskey taking a used name: %v, want ErrNameTaken", err)
	}
	if got := getUser(t, st, "u1"); got.Tag != model.TagGuest || got.Passkeys != 0 || got.Name != "guest_u1" {
		t.Fatalf("a refused AddPasskey wrote the user: %+v", got)
	}
	_, err := st.GetPasskey(bg, "pk1")
	wantNotFound(t, "the passkey of a refused AddPasskey", err)
	// The name moves with the passkey when free.
	u := mustAddPasskey(t, st, newPasskey("pk1", "u1", T0, 0), func(u *model.User) error { u.Name = "bea"; return nil })
	if u.Name != "bea" {
		t.Fatalf("AddPasskey renaming: %+v", u)
	}
	if got, err := st.GetUserByName(bg, "BEA"); err != nil || got.ID != "u1" {
		t.Fatalf("GetUserByName after a rename with a passkey: %+v, %v", got, err)
	}
}

// Of two concurrent removals of a user's last two passkeys, with a check
// that keeps one way in, exactly one succeeds.
func testPasskeyLastOne(t *testing.T, st storage.Backend) {
	for round := range 5 {
		id := "u" + string(rune('a'+round))
		mustCreate(t, st, NewUser(id, "guest_"+id), nil, nil)
		mustAddPasskey(t, st, newPasskey(id+"-1", id, T0, 0), nil)
		mustAddPasskey(t, st, newPasskey(id+"-2", id, T0, 0), nil)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i := range 2 {
			wg.Go(func() {
				errs[i] = st.DeletePasskey(bg, id, id+"-"+string(rune('1'+i)), keepOneWayIn, nil)
			})
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, errLastWayIn):
				t.Fatalf("round %d: DeletePasskey: %v", round, err)
			}
		}
		if ok != 1 || len(passkeyIDs(t, st, id)) != 1 || getUser(t, st, id).Passkeys != 1 {
			t.Fatalf("round %d: %d removals succeeded (%v), %d passkeys left; want exactly one of each", round, ok, errs, len(passkeyIDs(t, st, id)))
		}
	}
}

// Deleting a user (DeleteUser, DeleteUsersIf) deletes its passkeys, so
// their ids are free again.
func testPasskeysGoWithUser(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "guest_u1"), nil, nil)
	mustCreate(t, st, NewUser("u2", "guest_u2"), nil, nil)
	mustCreate(t, st, NewUser("u10", "guest_u10"), nil, nil)
	mustAddPasskey(t, st, newPasskey("a", "u1", T0, 0), nil)
	mustAddPasskey(t, st, newPasskey("b", "u2", T0, 0), nil)
	mustAddPasskey(t, st, newPasskey("c", "u10", T0, 0), nil)
	if err := st.DeleteUser(bg, "u1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DeleteUsersIf(bg, []string{"u2"}, func(*model.User) bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		_, err := st.GetPasskey(bg, id)
		wantNotFound(t, "a deleted user's passkey", err)
	}
	if got := passkeyIDs(t, st, "u10"); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("another user's passkeys after the deletes: %v", got)
	}
	mustCreate(t, st, NewUser("u3", "guest_u3"), nil, nil)
	mustAddPasskey(t, st, newPasskey("a", "u3", T0, 0), nil)
}

func testPasskeysCancelled(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "guest_u1"), nil, nil)
	mustAddPasskey(t, st, newPasskey("a", "u1", T0, 0), nil)
	ctx, cancel := context.WithCancel(bg)
	cancel()
	calls := map[string]error{}
	_, calls["AddPasskey"] = st.AddPasskey(ctx, newPasskey("b", "u1", T0, 0), nil, nil)
	_, calls["GetPasskey"] = st.GetPasskey(ctx, "a")
	_, calls["ListPasskeys"] = st.ListPasskeys(ctx, "u1")
	_, calls["UpdatePasskey"] = st.UpdatePasskey(ctx, "a", func(p *model.Passkey) error { p.Name = "x"; return nil })
	calls["DeletePasskey"] = st.DeletePasskey(ctx, "u1", "a", nil, nil)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", name, err)
		}
	}
	if got := passkeyIDs(t, st, "u1"); !slices.Equal(got, []string{"a"}) || getUser(t, st, "u1").Passkeys != 1 {
		t.Fatalf("a cancelled call wrote: %v", got)
	}
	if p, _ := st.GetPasskey(bg, "a"); p == nil || p.Name != "key a" {
		t.Fatalf("a cancelled update wrote: %+v", p)
	}
}

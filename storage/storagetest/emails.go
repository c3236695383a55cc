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

func withEmail(u *model.User, addr string, verified bool) *model.User {
	u.Email, u.EmailVerified = addr, verified
	return u
}

func wantEmailOwner(t *testing.T, st storage.Backend, addr, id string) {
	t.Helper()
	u, err := st.GetUserByEmail(bg, addr)
	if id == "" {
		if !errors.Is(err, model.ErrNotFound) {
			t.Fatalf("GetUserByEmail(%q) = %+v, %v; want ErrNotFound", addr, u, err)
		}
		return
	}
	if err != nil || u.ID != id {
		t.Fatalf("GetUserByEmail(%q) = %+v, %v; want %s", addr, u, err, id)
	}
}

// Verified addresses are unique by EmailKey; unverified ones take nothing
// and find nobody; every write moves the index with the record.
func testVerifiedEmailIndex(t *testing.T, st storage.Backend) {
	mustCreate(t, st, withEmail(NewUser("u1", "alice"), "Alice@example.test", true), nil, nil)
	if u := getUser(t, st, "u1"); u.Email != "Alice@example.test" || !u.EmailVerified {
		t.Fatalf("round trip: %+v", u)
	}
	for _, a := range []string{"alice@example.test", " ALICE@EXAMPLE.TEST ", "Alice@example.test"} {
		wantEmailOwner(t, st, a, "u1")
	}
	wantEmailOwner(t, st, "", "")
	wantEmailOwner(t, st, "bob@example.test", "")

	// The same address unverified is anyone's to claim, and finds nobody.
	mustCreate(t, st, withEmail(NewUser("u2", "bob"), "alice@EXAMPLE.test", false), nil, nil)
	wantEmailOwner(t, st, "alice@example.test", "u1")
	mustCreate(t, st, withEmail(NewUser("u4", "dave"), "dave@example.test", false), nil, nil)
	wantEmailOwner(t, st, "dave@example.test", "")

	// Verifying it while u1 holds it is refused, and writes nothing.
	if _, err := st.UpdateUser(bg, "u2", func(u *model.User) error { u.EmailVerified = true; u.DisplayName = "x"; return nil }, nil); !errors.Is(err, model.ErrEmailTaken) {
		t.Fatalf("verify a taken address: err = %v, want ErrEmailTaken", err)
	}
	if u := getUser(t, st, "u2"); u.EmailVerified || u.DisplayName != "" {
		t.Fatalf("a refused update was written: %+v", u)
	}
	// So is creating a user with it verified: no user, no name, no session.
	if err := st.CreateUser(bg, withEmail(NewUser("u3", "carol"), "ALICE@example.test", true), NewSession("s3", "u3"), nil, nil); !errors.Is(err, model.ErrEmailTaken) {
		t.Fatalf("create with a taken address: err = %v, want ErrEmailTaken", err)
	}
	_, err := st.GetUser(bg, "u3")
	wantNotFound(t, "refused user", err)
	_, err = st.GetUserByName(bg, "carol")
	wantNotFound(t, "refused user's name", err)
	_, err = st.GetSession(bg, "s3")
	wantNotFound(t, "refused user's session", err)

	// Rewriting the owner without touching its address keeps it.
	if _, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.DisplayName = "A"; u.Name = "alice2"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	wantEmailOwner(t, st, "alice@example.test", "u1")
	// A changed address starts unverified: the old one is free at once.
	if _, err := st.UpdateUser(bg, "u1", func(u *model.User) error { u.Email, u.EmailVerified = "alice@other.test", false; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	wantEmailOwner(t, st, "alice@example.test", "")
	wantEmailOwner(t, st, "alice@other.test", "")
	if _, err := st.UpdateUser(bg, "u2", func(u *model.User) error { u.EmailVerified = true; return nil }, nil); err != nil {
		t.Fatalf("verify a freed address: %v", err)
	}
	wantEmailOwner(t, st, "Alice@Example.Test", "u2")
	// Verified to verified in one write moves the entry.
	if _, err := st.UpdateUser(bg, "u2", func(u *model.User) error { u.Email = "bob@example.test"; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	wantEmailOwner(t, st, "alice@example.test", "")
	wantEmailOwner(t, st, "bob@example.test", "u2")
	// Deleting the user frees its address, by both delete paths.
	if err := st.DeleteUser(bg, "u2", nil); err != nil {
		t.Fatal(err)
	}
	wantEmailOwner(t, st, "bob@example.test", "")
	mustCreate(t, st, withEmail(NewUser("u5", "eve"), "eve@example.test", true), nil, nil)
	if _, err := st.DeleteUsersIf(bg, []string{"u5"}, func(*model.User) bool { return true }, nil); err != nil {
		t.Fatal(err)
	}
	wantEmailOwner(t, st, "eve@example.test", "")
	mustCreate(t, st, withEmail(NewUser("u6", "eve2"), "EVE@example.test", true), nil, nil)
	wantEmailOwner(t, st, "eve@example.test", "u6")
}

// Of users verifying one address at once, by creates and by updates,
// exactly one gets it.
func testUniqueEmailUnderConcurrency(t *testing.T, st storage.Backend) {
	const n = 8
	for i := range n {
		mustCreate(t, st, withEmail(NewUser(fmt.Sprintf("w%d", i), fmt.Sprintf("w%d", i)), "shared@example.test", false), nil, nil)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, errs[i] = st.UpdateUser(bg, fmt.Sprintf("w%d", i), func(u *model.User) error { u.EmailVerified = true; return nil }, nil)
		}()
		go func() {
			defer wg.Done()
			errs[n+i] = st.CreateUser(bg, withEmail(NewUser(fmt.Sprintf("c%d", i), fmt.Sprintf("c%d", i)), "SHARED@example.test", true), nil, nil, nil)
		}()
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, model.ErrEmailTaken):
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers verified one address, want 1", won)
	}
	owner, err := st.GetUserByEmail(bg, "shared@example.test")
	if err != nil || !owner.EmailVerified {
		t.Fatalf("owner = %+v, %v", owner, err)
	}
}

// A verified address is a way back to the account: a guest or
// passwordless user with one is not ephemeral, so neither idle scans nor
// orphan scans list it.
func testVerifiedEmailKeepsUser(t *testing.T, st storage.Backend) {
	plain := NewUser("g1", "guest_g1")
	mustCreate(t, st, plain, NewSession("s1", "g1"), nil)
	kept := withEmail(NewUser("g2", "guest_g2"), "g2@example.test", true)
	mustCreate(t, st, kept, NewSession("s2", "g2"), nil)
	idle := scanIdle(t, st, T0.Add(time.Hour), 10)
	if len(idle) != 1 || idle[0] != "g1" {
		t.Fatalf("idle scan = %v, want [g1]", idle)
	}
	for _, s := range []string{"s1", "s2"} {
		if err := st.DeleteSession(bg, s, nil); err != nil {
			t.Fatal(err)
		}
	}
	if o := scanOrphans(t, st); !o["g1"] || o["g2"] {
		t.Fatalf("orphans = %v, want g1 only", o)
	}
	// Unverified again (a changed address): ephemeral again.
	if _, err := st.UpdateUser(bg, "g2", func(u *model.User) error { u.Email, u.EmailVerified = "new@example.test", false; return nil }, nil); err != nil {
		t.Fatal(err)
	}
	if idle := scanIdle(t, st, T0.Add(time.Hour), 10); len(idle) != 2 {
		t.Fatalf("idle scan after the change = %v", idle)
	}
}

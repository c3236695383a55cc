package storagetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

const issuerA, issuerB = "https://idp-a.example", "https://idp-b.example"

func link(issuer, subject, userID string, at time.Duration) model.IdentityLink {
	return model.IdentityLink{Issuer: issuer, Subject: subject, UserID: userID, Provider: "p", LinkedAt: T0.Add(at)}
}

func promote(u *model.User) error {
	u.Tag, u.Name = model.TagNormal, "alice"
	return nil
}

func linkKeys(t *testing.T, st storage.Backend, userID string) []string {
	t.Helper()
	ls, err := st.ListIdentityLinks(bg, userID)
	if err != nil {
		t.Fatalf("ListIdentityLinks(%s): %v", userID, err)
	}
	var out []string
	for _, l := range ls {
		if l.UserID != userID {
			t.Fatalf("ListIdentityLinks(%s) returned %+v", userID, l)
		}
		out = append(out, l.Issuer+"|"+l.Subject)
	}
	return out
}

// A link is stored with its user's change in one write: the user promoted
// by fn and its Identities raised, so it no longer expires. An issuer and
// subject are linked to one user; a refused link writes nothing.
func testIdentityLinks(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("g", "guest_g"), NewSession("s-g", "g"), nil)
	mustCreate(t, st, NewUser("h", "guest_h"), nil, nil)
	mustIdentity(t, st, "g", "s-g") // cached: the link's write must be seen through the cache

	_, err := st.GetIdentityLink(bg, issuerA, "sub-1")
	wantNotFound(t, "GetIdentityLink before any link", err)
	if ls, err := st.ListIdentityLinks(bg, "g"); err != nil || len(ls) != 0 {
		t.Fatalf("ListIdentityLinks before any link: %v, %v", ls, err)
	}

	u, err := st.LinkIdentity(bg, link(issuerA, "sub-1", "g", time.Minute), promote, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u.Tag != model.TagNormal || u.Name != "alice" || u.Identities != 1 || u.Ephemeral() {
		t.Fatalf("LinkIdentity returned %+v; want promoted, one identity, not ephemeral", u)
	}
	if got := getUser(t, st, "g"); got.Tag != model.TagNormal || got.Identities != 1 {
		t.Fatalf("stored user %+v", got)
	}
	if got, _, err := st.Identity(bg, "g", "s-g"); err != nil || got.Tag != model.TagNormal || got.Identities != 1 {
		t.Fatalf("Identity after the link: %+v, %v", got, err)
	}
	// No longer ephemeral: out of the expiry index (a member whose only
	// way in is the link must not expire like a guest).
	if idle := scanIdle(t, st, T0.Add(time.Hour), 10); slices.Contains(idle, "g") || !slices.Contains(idle, "h") {
		t.Fatalf("idle users after the link: %v; want h, not g", idle)
	}
	if byName, err := st.GetUserByName(bg, "ALICE"); err != nil || byName.ID != "g" {
		t.Fatalf("the name fn set is indexed: %+v, %v", byName, err)
	}
	l, err := st.GetIdentityLink(bg, issuerA, "sub-1")
	if err != nil || l.UserID != "g" || l.Provider != "p" || !l.LinkedAt.Equal(T0.Add(time.Minute)) {
		t.Fatalf("GetIdentityLink: %+v, %v", l, err)
	}
	// Issuer and subject are compared exactly, and neither alone finds it.
	for _, q := range [][2]string{{issuerA, "SUB-1"}, {issuerA + "/", "sub-1"}, {issuerB, "sub-1"}, {issuerA, "sub-"}} {
		_, err := st.GetIdentityLink(bg, q[0], q[1])
		wantNotFound(t, fmt.Sprintf("GetIdentityLink(%q, %q)", q[0], q[1]), err)
	}

	// Taken: the same issuer and subject, for another user or the same.
	for _, uid := range []string{"h", "g"} {
		if _, err := st.LinkIdentity(bg, link(issuerA, "sub-1", uid, 2*time.Minute), promote, nil); !errors.Is(err, model.ErrExists) {
			t.Fatalf("linking a linked identity to %s: %v, want ErrExists", uid, err)
		}
	}
	if h := getUser(t, st, "h"); h.Tag != model.TagGuest || h.Identities != 0 || h.Name != "guest_h" {
		t.Fatalf("a refused link changed its user: %+v", h)
	}
	// Unknown user, fn's error, a name taken: nothing written.
	if _, err := st.LinkIdentity(bg, link(issuerA, "sub-9", "ghost", 0), nil, nil); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("link to an unknown user: %v", err)
	}
	boom := errors.New("boom")
	if _, err := st.LinkIdentity(bg, link(issuerA, "sub-2", "h", 0), func(*model.User) error { return boom }, nil); !errors.Is(err, boom) {
		t.Fatalf("fn's error: %v", err)
	}
	if _, err := st.LinkIdentity(bg, link(issuerA, "sub-2", "h", 0), promote, nil); !errors.Is(err, model.ErrNameTaken) {
		t.Fatalf("fn taking a taken name: %v, want ErrNameTaken", err)
	}
	_, err = st.GetIdentityLink(bg, issuerA, "sub-2")
	wantNotFound(t, "a link whose write failed", err)
	if h := getUser(t, st, "h"); h.Identities != 0 {
		t.Fatalf("failed links counted: %+v", h)
	}
	// Invalid links are refused.
	for _, bad := range []model.IdentityLink{
		{Issuer: "", Subject: "s", UserID: "h", LinkedAt: T0},
		{Issuer: issuerA, Subject: "", UserID: "h", LinkedAt: T0},
		{Issuer: issuerA, Subject: "a\x00b", UserID: "h", LinkedAt: T0},
		{Issuer: issuerA, Subject: "s", UserID: "h"},
	} {
		if _, err := st.LinkIdentity(bg, bad, nil, nil); err == nil {
			t.Fatalf("LinkIdentity(%+v) accepted", bad)
		}
	}

	// More links, listed oldest first; another user's are not listed.
	if _, err := st.LinkIdentity(bg, link(issuerB, "sub-1", "g", -time.Minute), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LinkIdentity(bg, link(issuerA, "sub-3", "g", time.Hour), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LinkIdentity(bg, link(issuerA, "sub-h", "h", 0), nil, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := linkKeys(t, st, "g"), []string{issuerB + "|sub-1", issuerA + "|sub-1", issuerA + "|sub-3"}; !slices.Equal(got, want) {
		t.Fatalf("links of g: %v, want %v", got, want)
	}
	if g := getUser(t, st, "g"); g.Identities != 3 || g.Tag != model.TagNormal || g.Name != "alice" {
		t.Fatalf("after three links: %+v", g)
	}

	// Unlink: only the user's own link; allow sees the user as it would
	// be saved and can refuse.
	wantNotFound(t, "unlinking another user's link", st.UnlinkIdentity(bg, "h", issuerA, "sub-1", nil, nil))
	wantNotFound(t, "unlinking an unknown link", st.UnlinkIdentity(bg, "g", issuerA, "nope", nil, nil))
	no := errors.New("the last way in")
	var seen int
	err = st.UnlinkIdentity(bg, "g", issuerA, "sub-1", func(u *model.User) error { seen = u.Identities; return no }, nil)
	if !errors.Is(err, no) || seen != 2 {
		t.Fatalf("refused unlink: %v (allow saw %d identities, want 2)", err, seen)
	}
	if l, err := st.GetIdentityLink(bg, issuerA, "sub-1"); err != nil || l.UserID != "g" {
		t.Fatalf("a refused unlink removed the link: %+v, %v", l, err)
	}
	if err := st.UnlinkIdentity(bg, "g", issuerA, "sub-1", func(*model.User) error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
	_, err = st.GetIdentityLink(bg, issuerA, "sub-1")
	wantNotFound(t, "an unlinked identity", err)
	if g, _, err := st.Identity(bg, "g", "s-g"); err != nil || g.Identities != 2 {
		t.Fatalf("after an unlink: %+v, %v", g, err)
	}
	wantNotFound(t, "unlinking twice", st.UnlinkIdentity(bg, "g", issuerA, "sub-1", nil, nil))
	// The identity is free again: it can be linked to another user.
	if _, err := st.LinkIdentity(bg, link(issuerA, "sub-1", "h", 2*time.Hour), nil, nil); err != nil {
		t.Fatalf("relinking an unlinked identity: %v", err)
	}
}

// Deleting a user deletes its links (DeleteUser and DeleteUsersIf), which
// frees its identities for others.
func testIdentityLinksGoWithUser(t *testing.T, st storage.Backend) {
	for _, id := range []string{"a", "b", "c"} {
		mustCreate(t, st, NewUser(id, "guest_"+id), nil, nil)
	}
	for i, id := range []string{"a", "a", "b"} {
		if _, err := st.LinkIdentity(bg, link(issuerA, fmt.Sprintf("s%d", i), id, time.Duration(i)), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.DeleteUser(bg, "a", nil); err != nil {
		t.Fatal(err)
	}
	if del, err := st.DeleteUsersIf(bg, []string{"b"}, func(*model.User) bool { return true }, nil); err != nil || len(del) != 1 {
		t.Fatalf("DeleteUsersIf: %v, %v", del, err)
	}
	for i := range 3 {
		_, err := st.GetIdentityLink(bg, issuerA, fmt.Sprintf("s%d", i))
		wantNotFound(t, "a deleted user's link", err)
	}
	for _, id := range []string{"a", "b"} {
		if ls, err := st.ListIdentityLinks(bg, id); err != nil || len(ls) != 0 {
			t.Fatalf("links of deleted %s: %v, %v", id, ls, err)
		}
	}
	if _, err := st.LinkIdentity(bg, link(issuerA, "s0", "c", 0), nil, nil); err != nil {
		t.Fatalf("a deleted user's identity linked again: %v", err)
	}
}

// Of concurrent links of one identity to different users exactly one
// wins; the others get ErrExists and change nothing.
func testIdentityLinkConcurrent(t *testing.T, st storage.Backend) {
	const n = 8
	for i := range n {
		mustCreate(t, st, NewUser(fmt.Sprintf("u%d", i), fmt.Sprintf("guest_u%d", i)), nil, nil)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = st.LinkIdentity(bg, link(issuerA, "same", fmt.Sprintf("u%d", i), 0), func(u *model.User) error {
				u.Tag = model.TagNormal
				return nil
			}, nil)
		})
	}
	wg.Wait()
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil && winner == "":
			winner = fmt.Sprintf("u%d", i)
		case errors.Is(err, model.ErrExists):
		default:
			t.Fatalf("link %d: %v (winner so far %q)", i, err, winner)
		}
	}
	l, err := st.GetIdentityLink(bg, issuerA, "same")
	if winner == "" || err != nil || l.UserID != winner {
		t.Fatalf("winner %q, link %+v, %v", winner, l, err)
	}
	for i := range n {
		id := fmt.Sprintf("u%d", i)
		u := getUser(t, st, id)
		if want := id == winner; (u.Identities == 1) != want || (u.Tag == model.TagNormal) != want {
			t.Fatalf("user %s: %+v (winner %s)", id, u, winner)
		}
	}
}

// Link and unlink store their events with them, and a failed one none.
func testIdentityLinkEvents(t *testing.T, st storage.Backend) {
	var calls int
	ev := func(name string) storage.Events { return eventsOf(name, &calls) }
	mustCreate(t, st, NewUser("u", "guest_u"), nil, nil)
	mustCreate(t, st, NewUser("v", "guest_v"), nil, nil)
	if _, err := st.LinkIdentity(bg, link(issuerA, "x", "u", 0), nil, ev("link")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LinkIdentity(bg, link(issuerA, "x", "v", 0), nil, ev("taken")); !errors.Is(err, model.ErrExists) {
		t.Fatal(err)
	}
	if err := st.UnlinkIdentity(bg, "u", issuerA, "x", func(*model.User) error { return errors.New("no") }, ev("refused")); err == nil {
		t.Fatal("refused unlink succeeded")
	}
	if err := st.UnlinkIdentity(bg, "u", issuerA, "x", nil, ev("unlink")); err != nil {
		t.Fatal(err)
	}
	if got, want := claimAll(t, st, "T"), []string{"link:done", "unlink:done"}; !slices.Equal(got, want) {
		t.Fatalf("outbox: %v, want %v", got, want)
	}
}

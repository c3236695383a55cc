package pages

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// post sends a same-origin form with cookie (a raw handle, "" for none)
// and returns the answer and the session cookies it sets.
func postForm(t *testing.T, p *Pages, path, cookie string, form url.Values) (*httptest.ResponseRecorder, []*http.Cookie) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "http://app.example"+path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if cookie != "" {
		r.Header.Set("Cookie", "guestauth_session="+cookie)
	}
	w := httptest.NewRecorder()
	if err := p.Serve(w, r); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	var set []*http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == "guestauth_session" || c.Name == "__Host-guestauth_session" {
			set = append(set, c)
		}
	}
	return w, set
}

// sessionOf is the identity of a cookie value, nil when it is no session.
func sessionOf(t *testing.T, p *Pages, handle string) (user string, merged string) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://app.example/app", nil)
	r.Header.Set("Cookie", "guestauth_session="+handle)
	id, err := p.Identity(httptest.NewRecorder(), r)
	if err != nil {
		t.Fatal(err)
	}
	if id == nil {
		return "", ""
	}
	return id.User.ID, id.Session.MergedFrom
}

// newGuest is a browser guest's handle, confirmed (its cookie came back
// once) unless unconfirmed.
func newGuest(t *testing.T, p *Pages, unconfirmed bool) string {
	t.Helper()
	_, set := postForm(t, p, "/auth/guest", "", url.Values{})
	if len(set) != 1 {
		t.Fatalf("guest: cookies %v", set)
	}
	if !unconfirmed {
		if u, _ := sessionOf(t, p, set[0].Value); u == "" {
			t.Fatal("new guest has no session")
		}
	}
	return set[0].Value
}

// handleAfter is the handle a browser holds after an answer setting set:
// the last session cookie set, else the one it had.
func handleAfter(set []*http.Cookie, had string) string {
	if len(set) == 0 {
		return had
	}
	return set[len(set)-1].Value
}

// Session fixation: every privilege change of a browser (a guest's
// sign-up, a sign-in, a password set or changed, an upgrade on the account
// page) gives it a new session and handle in exactly one Set-Cookie, and
// the handle it had before is no session at once, whoever holds it.
func TestPrivilegeChangeRotatesSession(t *testing.T) {
	p := newPagesWith(t, 100)
	pw := "correct horse battery"
	// alice exists, for the sign-ins.
	_, set := postForm(t, p, "/auth/signup", "", url.Values{"username": {"alice"}, "password": {pw}})
	if len(set) != 1 {
		t.Fatalf("registering alice: %v", set)
	}
	alice, _ := sessionOf(t, p, set[0].Value)

	for _, c := range []struct {
		name string
		// before makes the browser's session; it returns its handle.
		before      func(t *testing.T) string
		path        string
		form        url.Values
		wantUser    func(before string) string // the new session's user ("" = the same user)
		wantMergeOf bool                       // the new session carries the merge of the guest before
	}{
		{name: "guest signs up", before: func(t *testing.T) string { return newGuest(t, p, false) },
			path: "/auth/signup", form: url.Values{"username": {"bob"}, "password": {pw}}},
		{name: "unconfirmed guest signs up", before: func(t *testing.T) string { return newGuest(t, p, true) },
			path: "/auth/signup", form: url.Values{"username": {"carol"}, "password": {pw}}},
		{name: "guest signs in (merge)", before: func(t *testing.T) string { return newGuest(t, p, false) },
			path: "/auth/signin", form: url.Values{"username": {"alice"}, "password": {pw}},
			wantUser: func(string) string { return alice }, wantMergeOf: true},
		{name: "unconfirmed guest signs in", before: func(t *testing.T) string { return newGuest(t, p, true) },
			path: "/auth/signin", form: url.Values{"username": {"alice"}, "password": {pw}},
			wantUser: func(string) string { return alice }, wantMergeOf: true},
		{name: "member signs in again", before: func(t *testing.T) string {
			_, set := postForm(t, p, "/auth/signin", "", url.Values{"username": {"alice"}, "password": {pw}})
			return set[0].Value
		}, path: "/auth/signin", form: url.Values{"username": {"alice"}, "password": {pw}}},
		{name: "guest takes a username on the account page", before: func(t *testing.T) string { return newGuest(t, p, false) },
			path: "/auth/account", form: url.Values{"action": {"username"}, "username": {"dave"}}},
		{name: "passwordless member sets a password", before: func(t *testing.T) string {
			h := newGuest(t, p, false)
			_, set := postForm(t, p, "/auth/account", h, url.Values{"action": {"username"}, "username": {"erin"}})
			return handleAfter(set, h)
		}, path: "/auth/account", form: url.Values{"action": {"password"}, "password": {pw}}},
		{name: "member changes the password", before: func(t *testing.T) string {
			_, set := postForm(t, p, "/auth/signup", "", url.Values{"username": {"frank"}, "password": {pw}})
			return set[0].Value
		}, path: "/auth/account", form: url.Values{"action": {"password"}, "current_password": {pw}, "password": {"another good password"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			old := c.before(t)
			// The handle names its user; reading it as a session would
			// confirm an unconfirmed one.
			oldUser := strings.Split(old, ".")[1]
			w, set := postForm(t, p, c.path, old, c.form)
			if w.Code != http.StatusSeeOther {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if len(set) != 1 || set[0].Value == old || set[0].MaxAge <= 0 {
				t.Fatalf("want exactly one new session cookie, got %v (raw %q)", set, w.Header().Values("Set-Cookie"))
			}
			if u, _ := sessionOf(t, p, old); u != "" {
				t.Fatalf("the handle from before the change is still a session of %s", u)
			}
			want := oldUser
			if c.wantUser != nil {
				want = c.wantUser(old)
			}
			u, merged := sessionOf(t, p, set[0].Value)
			if u == "" || (want != "" && u != want) {
				t.Fatalf("new session's user %q, want %q", u, want)
			}
			if c.wantMergeOf && merged != oldUser {
				t.Fatalf("new session's merge mark %q, want the guest %q", merged, oldUser)
			}
		})
	}
}

// The pending merge mark carries over a later rotation of the same
// user's session: a password change right after a sign-in from a guest
// still tells the app of the guest.
func TestRotationCarriesMerge(t *testing.T) {
	p := newPagesWith(t, 100)
	pw := "correct horse battery"
	postForm(t, p, "/auth/signup", "", url.Values{"username": {"alice"}, "password": {pw}})
	guest := newGuest(t, p, false)
	guestID, _ := sessionOf(t, p, guest)
	_, set := postForm(t, p, "/auth/signin", guest, url.Values{"username": {"alice"}, "password": {pw}})
	_, set = postForm(t, p, "/auth/account", handleAfter(set, guest), url.Values{"action": {"password"}, "current_password": {pw}, "password": {"another good password"}})
	if len(set) != 1 {
		t.Fatalf("password change: cookies %v", set)
	}
	if _, merged := sessionOf(t, p, set[0].Value); merged != guestID {
		t.Fatalf("merge mark after the rotation %q, want %q", merged, guestID)
	}
}

// A refused privilege change leaves the browser's session as it was: the
// same handle, no cookie set.
func TestRefusedChangeKeepsSession(t *testing.T) {
	p := newPagesWith(t, 100)
	guest := newGuest(t, p, false)
	for _, form := range []url.Values{
		{"username": {"guest_x"}, "password": {"correct horse battery"}},
		{"username": {"zoe"}, "password": {"short"}},
	} {
		w, set := postForm(t, p, "/auth/signup", guest, form)
		if w.Code != http.StatusBadRequest || len(set) != 0 {
			t.Fatalf("%v: %d, cookies %v", form, w.Code, set)
		}
		if u, _ := sessionOf(t, p, guest); u == "" {
			t.Fatalf("%v: the guest's session ended", form)
		}
	}
}

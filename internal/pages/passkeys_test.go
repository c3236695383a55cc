package pages

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/webauthntest"
	"github.com/guestauth/caddy-guestauth/storage"
)

// newPasskeyPages is newPages with passkeys, and its store.
func newPasskeyPages(t *testing.T) (*Pages, storage.Backend) {
	t.Helper()
	var st storage.Backend
	p := newPagesCfg(t, 1, func(s storage.Backend, _ *accounts.Config) { st = s })
	pk, err := accounts.NewPasskeys(p.Accounts, st, accounts.PasskeyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p.Passkeys = pk
	return p, st
}

// postJSON posts v to one of the passkey endpoints as passkeys.js does.
func (b *browser) postJSON(path string, v any, site string) (*httptest.ResponseRecorder, map[string]json.RawMessage) {
	b.t.Helper()
	raw, _ := json.Marshal(v)
	r := httptest.NewRequest(http.MethodPost, "http://app.example"+path, bytes.NewReader(raw))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Sec-Fetch-Site", site)
	if b.cookie != "" {
		r.Header.Set("Cookie", "guestauth_session="+b.cookie)
	}
	w := httptest.NewRecorder()
	if err := b.p.Serve(w, r); err != nil {
		b.t.Fatalf("POST %s: %v", path, err)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == "guestauth_session" {
			b.cookie = c.Value
		}
	}
	var out map[string]json.RawMessage
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		b.t.Fatalf("POST %s: Content-Type %q: %s", path, ct, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		b.t.Fatalf("POST %s: %v: %s", path, err, w.Body)
	}
	return w, out
}

func (b *browser) userID() string {
	b.t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Cookie", "guestauth_session="+b.cookie)
	id, err := b.p.Identity(httptest.NewRecorder(), r)
	if err != nil || id == nil {
		b.t.Fatalf("no session: %v", err)
	}
	return id.User.ID
}

// The pages' passkey journey, as passkeys.js drives it: a visitor saves
// a passkey from the sign-up page (a guest is made, then a member with
// the same id), signs out, signs in with it, and cannot remove the last
// one; the endpoints refuse cross-site requests and replays.
func TestPagesPasskeys(t *testing.T) {
	p, st := newPasskeyPages(t)
	a := webauthntest.New(t, "https://app.example")
	b := &browser{t: t, p: p}

	w := b.do("GET", "/auth/signup", nil, "")
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		!strings.Contains(w.Body.String(), `<script src="/auth/passkeys.js" defer></script>`) || !strings.Contains(w.Body.String(), "Save with a passkey") {
		t.Fatalf("sign-up page: CSP %q\n%s", csp, w.Body)
	}
	if w := b.do("GET", "/auth/passkeys.js", nil, ""); w.Code != 200 || w.Header().Get("Content-Type") != "text/javascript; charset=utf-8" || !strings.Contains(w.Body.String(), "navigator.credentials.create") {
		t.Fatalf("passkeys.js: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	if w, out := b.postJSON("/auth/passkeys/register/begin", map[string]any{}, "cross-site"); w.Code != 403 || out["error"] == nil || b.cookie != "" {
		t.Fatalf("cross-site begin: %d %s", w.Code, w.Body)
	}

	w, begin := b.postJSON("/auth/passkeys/register/begin", map[string]any{}, "same-origin")
	if w.Code != 200 || b.cookie == "" {
		t.Fatalf("register begin: %d %s (cookie %q)", w.Code, w.Body, b.cookie)
	}
	guestID := b.userID()
	guestCookie := b.cookie
	var handle string
	json.Unmarshal(begin["handle"], &handle)
	resp, credID := a.Create(begin["options"])
	w, done := b.postJSON("/auth/passkeys/register/finish", map[string]any{"handle": handle, "name": "laptop", "credential": json.RawMessage(resp)}, "same-origin")
	if w.Code != 200 || string(done["redirect"]) != `"/auth/account"` || b.cookie == guestCookie {
		t.Fatalf("register finish: %d %s", w.Code, w.Body)
	}
	if got := b.userID(); got != guestID {
		t.Fatalf("after saving a passkey the browser is %s, want the guest's id %s", got, guestID)
	}
	u, err := st.GetUser(context.Background(), guestID)
	if err != nil || u.IsAnonymous() || u.PasswordHash != "" || u.Passkeys != 1 {
		t.Fatalf("user after the registration: %+v, %v", u, err)
	}
	w = b.do("GET", "/auth/account", nil, "")
	if !strings.Contains(w.Body.String(), `value="laptop"`) || !strings.Contains(w.Body.String(), `name="passkey" value="`+credID+`"`) {
		t.Fatalf("account page lists no passkey:\n%s", w.Body)
	}
	// The last way in stays.
	w = b.do("POST", "/auth/account", url.Values{"action": {"passkey_remove"}, "passkey": {credID}}, "same-origin")
	if w.Code != 400 || !strings.Contains(w.Body.String(), "last way to sign in") || !strings.Contains(w.Body.String(), `value="laptop"`) {
		t.Fatalf("removing the last passkey: %d\n%s", w.Code, w.Body)
	}
	w = b.do("POST", "/auth/account", url.Values{"action": {"passkey_rename"}, "passkey": {credID}, "passkey_name": {"work laptop"}}, "same-origin")
	if w.Code != 303 {
		t.Fatalf("rename: %d\n%s", w.Code, w.Body)
	}
	if w := b.do("GET", "/auth/account", nil, ""); !strings.Contains(w.Body.String(), `value="work laptop"`) {
		t.Fatalf("rename not shown:\n%s", w.Body)
	}
	b.do("POST", "/auth/signout", url.Values{}, "same-origin")
	if b.cookie != "" {
		t.Fatal("still signed in")
	}

	w = b.do("GET", "/auth/signin?return_to=/app", nil, "")
	if !strings.Contains(w.Body.String(), `id="passkey-signin" data-prefix="/auth/" data-return="/app"`) {
		t.Fatalf("sign-in page has no passkey button:\n%s", w.Body)
	}
	_, begin = b.postJSON("/auth/passkeys/signin/begin", map[string]any{}, "same-origin")
	json.Unmarshal(begin["handle"], &handle)
	assertion := a.Get(begin["options"], credID, 1)
	w, done = b.postJSON("/auth/passkeys/signin/finish", map[string]any{"handle": handle, "return_to": "/app", "credential": json.RawMessage(assertion)}, "same-origin")
	if w.Code != 200 || string(done["redirect"]) != `"/app"` || b.userID() != guestID {
		t.Fatalf("sign-in finish: %d %s", w.Code, w.Body)
	}
	// A replay is refused, and changes nothing.
	other := &browser{t: t, p: p}
	if w, out := other.postJSON("/auth/passkeys/signin/finish", map[string]any{"handle": handle, "credential": json.RawMessage(assertion)}, "same-origin"); w.Code != 400 || out["error"] == nil || other.cookie != "" {
		t.Fatalf("replayed assertion: %d %s", w.Code, w.Body)
	}
	if w, _ := other.postJSON("/auth/passkeys/register/finish", map[string]any{"handle": handle}, "same-origin"); w.Code != 401 {
		t.Fatalf("register finish without a session: %d %s", w.Code, w.Body)
	}
}

// Without passkeys the pages have no script, no endpoints, no buttons.
func TestPagesWithoutPasskeys(t *testing.T) {
	b := &browser{t: t, p: newPages(t)}
	w := b.do("GET", "/auth/signin", nil, "")
	if strings.Contains(w.Header().Get("Content-Security-Policy"), "script-src") || strings.Contains(w.Body.String(), "passkey") {
		t.Fatalf("sign-in page without passkeys: %q\n%s", w.Header().Get("Content-Security-Policy"), w.Body)
	}
	for _, path := range []string{"/auth/passkeys.js", "/auth/passkeys/signin/begin"} {
		if w := b.do("POST", path, url.Values{}, "same-origin"); w.Code != 404 {
			t.Fatalf("%s without passkeys: %d", path, w.Code)
		}
	}
}

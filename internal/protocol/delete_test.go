package protocol

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

// POST /api/delete-account: the caller's account is deleted (a guest with
// its token alone, a user with a password with it), answered in Casdoor's
// envelope with a status that agrees; the token stops at once.
func TestDeleteAccountEndpoint(t *testing.T) {
	h := newHandler(t)
	// A Service of its own: one wrong deletion password per session, then 429.
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "d.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	var deleted []events.Event
	h.Accounts, err = accounts.New(ctx, st, keys, accounts.Config{
		Alg: jwa.ES256, AccessTTL: time.Hour, SessionIdle: time.Hour, SessionLifetime: time.Hour, CacheSize: 10,
		Audiences:   []string{"app"},
		DeviceLimit: accounts.Limit{Burst: 2, Interval: time.Hour},
		Argon2:      accounts.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1},
		Observer: func(_ context.Context, ev events.Event, _ bool) {
			if ev.Type == events.UserDeleted {
				deleted = append(deleted, ev)
			}
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	newGuest := func() string {
		tok := call(t, h.Token, form(PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {GuestCode}, "client_id": {"app"}, "client_secret": {"app-secret"}})).body
		return tok["access_token"].(string)
	}
	del := func(access, ct, body string) answer {
		r := httptest.NewRequest(http.MethodPost, PathDeleteAccount, strings.NewReader(body))
		if access != "" {
			r.Header.Set("Authorization", "Bearer "+access)
		}
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		return call(t, h.DeleteAccount, r)
	}
	account := func(access string) answer {
		r := httptest.NewRequest(http.MethodGet, PathGetAccount, nil)
		r.Header.Set("Authorization", "Bearer "+access)
		return call(t, h.GetAccount, r)
	}

	guest := newGuest()
	if a := del(guest, "", ""); a.status != 200 || a.body["status"] != "ok" || a.body["data"] != "Affected" || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("guest, no body: %+v", a)
	}
	if a := account(guest); a.status != 401 || a.body["data"] != "invalid_token" {
		t.Fatalf("the deleted guest's token: %+v", a)
	}
	if len(deleted) != 1 || deleted[0].Data["cause"] != accounts.CauseSelf {
		t.Fatalf("events %+v", deleted)
	}

	member := newGuest()
	upd := form(PathUpdateUser, url.Values{"name": {"petra"}, "password": {"petra's password"}}, "Authorization", "Bearer "+member)
	if a := call(t, h.UpdateUser, upd); a.status != 200 {
		t.Fatalf("upgrade: %+v", a)
	}
	for _, c := range []struct {
		name, access, ct, body string
		status                 int
		data                   string
	}{
		{"no token", "", "", "", 401, ""},
		{"bad token", "nope", "", "", 401, "invalid_token"},
		{"no password", member, "", "", 403, accounts.CodeWrongPassword},
		{"unreadable body", member, "text/plain", "password=x", 400, accounts.CodeInvalidRequest},
		{"wrong password", member, "application/x-www-form-urlencoded", "password=nope+nope", 403, accounts.CodeWrongPassword},
		{"wrong password again", member, "application/json", `{"password":"still wrong"}`, 403, accounts.CodeWrongPassword},
		{"over the session's budget", member, "application/json", `{"password":"petra's password"}`, 429, ""},
	} {
		a := del(c.access, c.ct, c.body)
		data, _ := a.body["data"].(string)
		if a.status != c.status || a.body["status"] != "error" || data != c.data || a.body["msg"] == "" {
			t.Fatalf("%s: %+v, want %d %q", c.name, a, c.status, c.data)
		}
		if c.status == 401 && !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Bearer") || c.status != 401 && a.header.Get("WWW-Authenticate") != "" {
			t.Fatalf("%s: WWW-Authenticate %q", c.name, a.header.Get("WWW-Authenticate"))
		}
		if (c.status == 429) != (a.header.Get("Retry-After") != "") {
			t.Fatalf("%s: Retry-After %q", c.name, a.header.Get("Retry-After"))
		}
	}
	if a := account(member); a.status != 200 || len(deleted) != 1 {
		t.Fatalf("refused deletions deleted: %+v %v", a, deleted)
	}
	// A new session of its own has a budget of its own.
	in := call(t, h.Token, form(PathToken, url.Values{"grant_type": {"password"}, "username": {"petra"}, "password": {"petra's password"}, "client_id": {"app"}, "client_secret": {"app-secret"}})).body
	fresh := in["access_token"].(string)
	if a := del(fresh, "application/json", `{"password":"petra's password"}`); a.status != 200 || a.body["status"] != "ok" {
		t.Fatalf("member with the password: %+v", a)
	}
	for _, tok := range []string{member, fresh} {
		if a := account(tok); a.status != 401 {
			t.Fatalf("a deleted member's token: %+v", a)
		}
	}
	if len(deleted) != 2 || deleted[1].Data["name"] != "petra" {
		t.Fatalf("events %+v", deleted)
	}
}

package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/headers"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// The per-request work after a token cache hit, as upper bounds: the
// identity headers cost at most one allocation (their four values
// together) and the placeholders at most the boxing of the user's three
// strings for the Replacer (none for the no-user values set first, none
// for the anonymous flag); the headers are keyed as http.Header.Set keys
// them, whatever the spelling of the configured names.
func TestIdentityHeadersAndPlaceholdersAllocations(t *testing.T) {
	g := stripper(HeaderNames{UserID: "x-user-id", UserName: "X-USER-NAME"})
	id := &accounts.Identity{User: &model.User{ID: "u1", Name: "guest_u1", Tag: model.TagGuest}}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	if err := g.setIdentity(r, id); err != nil {
		t.Fatal(err)
	}
	want := http.Header{}
	want.Set("x-user-id", "u1")
	want.Set("X-USER-NAME", "guest_u1")
	want.Set(headers.DefaultUserTag, model.TagGuest)
	want.Set(headers.DefaultUserAnonymous, "true")
	if len(r.Header) != len(want) {
		t.Fatalf("headers %v, want %v", r.Header, want)
	}
	for k, v := range want {
		if got := r.Header[k]; len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := g.setIdentity(r, id); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("identity headers: %v allocations, want at most 1", n)
	}

	repl := caddy.NewReplacer()
	setUserPlaceholders(repl, nil)
	if n := testing.AllocsPerRun(100, func() {
		setUserPlaceholders(repl, nil)
		setUserPlaceholders(repl, id)
	}); n > 3 {
		t.Errorf("placeholders: %v allocations, want at most 3", n)
	}
	for k, want := range map[string]string{"id": "u1", "name": "guest_u1", "tag": model.TagGuest, "anonymous": "true"} {
		if got, _ := repl.GetString("http.auth.user." + k); got != want {
			t.Errorf("{http.auth.user.%s} = %q, want %q", k, got, want)
		}
	}
}

package protocol

// In-process tables for the endpoints the Casdoor and Authgear SDKs call
// beyond the token endpoint: Casdoor's refresh endpoint and user API, and
// Authgear's anonymous user API, over a real Service on a real bbolt
// store, with requests shaped as the SDKs send them (see
// /work/notes/clients.md for the captures).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

const org = "acme"

// recorded are the events a Service reported.
type recorded struct {
	mu  sync.Mutex
	evs []events.Event
}

func (r *recorded) observe(_ context.Context, ev events.Event, _ bool) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

// take returns the types of the events since the last call.
func (r *recorded) take() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.evs = nil
	return evs
}

// newSDKHandler is a Handler with the SDKs' clients: app (confidential),
// backend (confidential, manage_users), spa (public, key-pair and web
// guests), in organization acme.
func newSDKHandler(t *testing.T) (*Handler, *recorded) {
	t.Helper()
	return newSDKHandlerAlg(t, jwa.RS256)
}

// newSDKHandlerAlg is newSDKHandler signing with alg.
func newSDKHandlerAlg(t *testing.T, alg jwa.SignatureAlgorithm) (*Handler, *recorded) {
	t.Helper()
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{Kind: storage.KindBolt, Location: filepath.Join(t.TempDir(), "g.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := tokens.LoadKeyring(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorded{}
	svc, err := accounts.New(ctx, st, keys, accounts.Config{
		Alg: alg, AccessTTL: time.Hour, SessionIdle: time.Hour, SessionLifetime: time.Hour, CacheSize: 10,
		Audiences: []string{"app", "backend", "spa"}, Organization: org, Observer: rec.observe,
		Argon2: accounts.Argon2Params{MemoryKiB: 64, Time: 1, Threads: 1}, ReservedNames: accounts.DefaultReservedNames,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ip := func(*http.Request) string { return "192.0.2.1" }
	backend := NewClient("backend", []byte("backend-secret"), false, "")
	backend.ManageUsers = true
	return &Handler{
		Accounts: svc,
		Clients: map[string]*Client{
			"app":     NewClient("app", []byte("app-secret"), false, ""),
			"backend": backend,
			"spa":     NewClient("spa", nil, true, "keypair web"),
		},
		Issuer: func(*http.Request) string { return testIssuer }, Origin: func(*http.Request) string { return testIssuer },
		FixedIssuer: true, Alg: alg, KeySet: keys.JWKS, ClientIP: ip, LimitKey: ip, Logger: zap.NewNop(),
	}, rec
}

// req makes a request; headers alternate name, value.
func req(method, target, ct string, body []byte, header ...string) *http.Request {
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

func jsonBody(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// multipartBody is a multipart/form-data body of fields, as the SDKs'
// form helpers write it.
func multipartBody(fields map[string]string) (string, []byte) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		_ = w.WriteField(k, v)
	}
	_ = w.Close()
	return w.FormDataContentType(), b.Bytes()
}

var (
	basicBackend = "Basic " + b64("backend:backend-secret")
	basicApp     = "Basic " + b64("app:app-secret")
)

// guestOf creates a guest through app and returns its token set.
func guestOf(t *testing.T, h *Handler) map[string]any {
	t.Helper()
	a := call(t, h.Token, form(PathTokenCasdoor, url.Values{"grant_type": {"authorization_code"}, "code": {GuestCode}, "client_id": {"app"}, "client_secret": {"app-secret"}}))
	if a.status != 200 {
		t.Fatalf("guest: %+v", a)
	}
	return a.body
}

// claims decodes a JWT's payload (its signature is checked elsewhere).
func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	p := strings.Split(jwt, ".")
	if len(p) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	raw, err := b64url(p[1])
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func b64url(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// Casdoor's refresh endpoint, as both server SDKs call it, and its
// refusals: grant_type must be refresh_token; a confidential client must
// authenticate, a public one needs only its client_id.
func TestRefreshCasdoor(t *testing.T) {
	t.Parallel()
	h, _ := newSDKHandler(t)
	rt := guestOf(t, h)["refresh_token"].(string)
	next := func(a answer) string {
		t.Helper()
		s, _ := a.body["refresh_token"].(string)
		if a.status != 200 || s == "" || a.body["access_token"] == nil {
			t.Fatalf("refresh: %+v", a)
		}
		rt = s
		return s
	}
	// casdoor-go-sdk: a form with the body secret, no Basic.
	next(call(t, h.RefreshCasdoor, form(PathRefreshCasdoor, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}, "client_secret": {"app-secret"}})))
	// casdoor-nodejs-sdk: JSON, Basic and the body secret.
	node := func(kv map[string]string, auth string) *http.Request {
		return req(http.MethodPost, PathRefreshCasdoor, "application/json", jsonBody(kv), "Authorization", auth)
	}
	next(call(t, h.RefreshCasdoor, node(map[string]string{"client_id": "app", "client_secret": "app-secret", "grant_type": "refresh_token", "refresh_token": rt}, basicApp)))
	// JSON labelled text/plain, and multipart, as Casdoor reads them too.
	next(call(t, h.RefreshCasdoor, req(http.MethodPost, PathRefreshCasdoor, "text/plain;charset=UTF-8",
		jsonBody(map[string]string{"client_id": "app", "client_secret": "app-secret", "grant_type": "refresh_token", "refresh_token": rt}))))
	ct, mp := multipartBody(map[string]string{"client_id": "app", "client_secret": "app-secret", "grant_type": "refresh_token", "refresh_token": rt})
	next(call(t, h.RefreshCasdoor, req(http.MethodPost, PathRefreshCasdoor, ct, mp)))

	// A public client (spa) refreshes with its client_id alone.
	web := call(t, h.AnonymousSignup, req(http.MethodPost, PathAnonymousSignup, "application/json", jsonBody(map[string]string{"client_id": "spa", "session_type": "refresh_token"})))
	spaRT := web.body["result"].(map[string]any)["refresh_token"].(string)
	if a := call(t, h.RefreshCasdoor, form(PathRefreshCasdoor, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {spaRT}, "client_id": {"spa"}})); a.status != 200 {
		t.Fatalf("public refresh: %+v", a)
	}

	for _, c := range []struct {
		name      string
		r         *http.Request
		status    int
		code      string
		challenge string
	}{
		{"no grant_type", form(PathRefreshCasdoor, url.Values{"refresh_token": {rt}, "client_id": {"app"}, "client_secret": {"app-secret"}}), 400, "invalid_request", ""},
		{"another grant", form(PathRefreshCasdoor, url.Values{"grant_type": {"authorization_code"}, "code": {GuestCode}, "client_id": {"app"}, "client_secret": {"app-secret"}}), 400, "unsupported_grant_type", ""},
		{"no secret", form(PathRefreshCasdoor, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"app"}}), 401, "invalid_client", ""},
		{"Basic and another body secret", node(map[string]string{"client_id": "app", "client_secret": "nope", "grant_type": "refresh_token", "refresh_token": rt}, basicApp), 401, "invalid_client", `Basic realm="guest_auth"`},
		{"no token", form(PathRefreshCasdoor, url.Values{"grant_type": {"refresh_token"}, "client_id": {"app"}, "client_secret": {"app-secret"}}), 400, "invalid_request", ""},
		{"another client's token", form(PathRefreshCasdoor, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"backend"}, "client_secret": {"backend-secret"}}), 400, "invalid_grant", ""},
		{"text/plain, not JSON", req(http.MethodPost, PathRefreshCasdoor, "text/plain", []byte("grant_type=refresh_token")), 400, "invalid_request", ""},
		{"text/plain, a number", req(http.MethodPost, PathRefreshCasdoor, "text/plain", []byte(`{"grant_type":"refresh_token","refresh_token":1}`)), 400, "invalid_request", ""},
		{"XML", req(http.MethodPost, PathRefreshCasdoor, "application/xml", []byte("<a/>")), 400, "invalid_request", ""},
		{"used token", form(PathRefreshCasdoor, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {spaRT}, "client_id": {"spa"}}), 400, "invalid_grant", ""},
	} {
		a := call(t, h.RefreshCasdoor, c.r)
		if a.status != c.status || a.body["error"] != c.code || a.header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("%s: %d %v %q; want %d %s %q", c.name, a.status, a.body, a.header.Get("WWW-Authenticate"), c.status, c.code, c.challenge)
		}
	}
}

// Access and ID tokens carry Casdoor's owner and id; the ID token and
// UserInfo carry Authgear's user claims.
func TestSDKClaims(t *testing.T) {
	t.Parallel()
	h, _ := newSDKHandler(t)
	tok := guestOf(t, h)
	at, id := claims(t, tok["access_token"].(string)), claims(t, tok["id_token"].(string))
	for _, c := range []map[string]any{at, id} {
		if c["owner"] != org || c["id"] != c["sub"] || c["name"] == nil {
			t.Fatalf("Casdoor claims: %v", c)
		}
	}
	const ag = "https://authgear.com/claims/user/"
	if id[ag+"is_anonymous"] != true || id[ag+"is_verified"] != false || id[ag+"can_reauthenticate"] != false {
		t.Fatalf("Authgear claims in the ID token: %v", id)
	}
	info := call(t, h.UserInfo, req(http.MethodGet, PathUserInfo, "", nil, "Authorization", "Bearer "+tok["access_token"].(string)))
	if info.body[ag+"is_anonymous"] != true || info.body[ag+"is_verified"] != false || info.body[ag+"can_reauthenticate"] != false {
		t.Fatalf("Authgear claims in UserInfo: %v", info.body)
	}
}

// manage calls a user API handler as the backend would (Basic).
func manage(t *testing.T, serve func(http.ResponseWriter, *http.Request) error, method, target, ct string, body []byte) answer {
	t.Helper()
	return call(t, serve, req(method, target, ct, body, "Authorization", basicBackend))
}

// The refusals of the user API: credentials missing, wrong, of a client
// without manage_users, or disagreeing; every one in Casdoor's envelope.
func TestUserAPIClientRefusals(t *testing.T) {
	t.Parallel()
	h, _ := newSDKHandler(t)
	target := PathGetUser + "?id=" + org + "/nobody"
	for _, c := range []struct {
		name      string
		r         *http.Request
		status    int
		challenge string
	}{
		{"no credentials", req(http.MethodGet, target, "", nil), 401, `Basic realm="guest_auth"`},
		{"wrong Basic secret", req(http.MethodGet, target, "", nil, "Authorization", "Basic "+b64("backend:nope")), 401, `Basic realm="guest_auth"`},
		{"unknown Basic client", req(http.MethodGet, target, "", nil, "Authorization", "Basic "+b64("ghost:backend-secret")), 401, `Basic realm="guest_auth"`},
		{"no manage_users", req(http.MethodGet, target, "", nil, "Authorization", basicApp), 403, ""},
		{"no manage_users, query", req(http.MethodGet, target+"&clientId=app&clientSecret=app-secret", "", nil), 403, ""},
		{"wrong query secret", req(http.MethodGet, target+"&clientId=backend&clientSecret=nope", "", nil), 401, ""},
		{"query secret without id", req(http.MethodGet, target+"&clientSecret=backend-secret", "", nil), 401, `Basic realm="guest_auth"`},
		{"Basic and another query client", req(http.MethodGet, target+"&clientId=app&clientSecret=app-secret", "", nil, "Authorization", basicBackend), 401, `Basic realm="guest_auth"`},
		{"repeated clientId", req(http.MethodGet, target+"&clientId=backend&clientId=backend&clientSecret=backend-secret", "", nil), 400, ""},
		{"a Bearer token", req(http.MethodGet, target, "", nil, "Authorization", "Bearer x"), 401, `Basic realm="guest_auth"`},
	} {
		a := call(t, h.GetUser, c.r)
		if a.status != c.status || a.body["status"] != "error" || a.body["msg"] == "" || a.header.Get("WWW-Authenticate") != c.challenge {
			t.Errorf("%s: %d %v %q; want %d %q", c.name, a.status, a.body, a.header.Get("WWW-Authenticate"), c.status, c.challenge)
		}
	}
	// Every endpoint of the API refuses a client without manage_users.
	for name, serve := range map[string]func(http.ResponseWriter, *http.Request) error{
		"get-users": h.GetUsers, "update-user": h.UpdateUser, "add-user": h.AddUser, "delete-user": h.DeleteUser, "set-password": h.SetPassword,
	} {
		ct, body := multipartBody(map[string]string{"userOwner": org, "userName": "x", "newPassword": "some-password"})
		if name != "set-password" {
			ct, body = "application/json", jsonBody(map[string]string{"owner": org, "name": "someone"})
		}
		a := call(t, serve, req(http.MethodPost, "/api/"+name+"?id="+org+"/someone", ct, body, "Authorization", basicApp))
		if a.status != 403 || a.body["status"] != "error" {
			t.Errorf("%s without manage_users: %+v", name, a)
		}
	}
	// With the right ones, in the query (Casdoor's clientId/clientSecret).
	if a := call(t, h.GetUser, req(http.MethodGet, target+"&clientId=backend&clientSecret=backend-secret", "", nil)); a.status != 200 || a.body["status"] != "ok" {
		t.Fatalf("query credentials: %+v", a)
	}
}

// The managing client's user API, end to end in process: a guest is read,
// upgraded by a rename with the whole User object (JSON as text/plain,
// with non-string fields ignored), given a password by multipart
// set-password, listed and paged, and a named user added and deleted.
func TestUserAPI(t *testing.T) {
	t.Parallel()
	h, rec := newSDKHandler(t)
	tok := guestOf(t, h)
	name := claims(t, tok["access_token"].(string))["name"].(string)
	sub := claims(t, tok["access_token"].(string))["sub"].(string)
	rec.take()

	a := manage(t, h.GetUser, http.MethodGet, PathGetUser+"?id="+org+"/"+name, "", nil)
	u, _ := a.body["data"].(map[string]any)
	if a.status != 200 || a.body["status"] != "ok" || u["owner"] != org || u["name"] != name || u["id"] != sub ||
		u["tag"] != model.TagGuest || u["type"] != "normal-user" || u["password"] != "" || u["isAnonymous"] != true || u["createdTime"] == "" {
		t.Fatalf("get-user: %+v", a)
	}
	if a := manage(t, h.GetUser, http.MethodGet, PathGetUser+"?owner="+org+"&userId="+sub, "", nil); a.body["data"].(map[string]any)["name"] != name {
		t.Fatalf("get-user by userId: %+v", a)
	}
	for _, q := range []string{"id=" + org + "/nobody", "id=other/" + name, "owner=" + org + "&email=a@b.c", "owner=other&userId=" + sub} {
		if a := manage(t, h.GetUser, http.MethodGet, PathGetUser+"?"+q, "", nil); a.status != 200 || a.body["status"] != "ok" || a.body["data"] != nil {
			t.Errorf("get-user %s: %+v, want data null", q, a)
		}
	}
	for _, q := range []string{"id=" + name, "id=/" + name, "id=" + org + "/", ""} {
		if a := manage(t, h.GetUser, http.MethodGet, PathGetUser+"?"+q, "", nil); a.status != 400 || a.body["status"] != "error" {
			t.Errorf("get-user %s: %+v, want 400", q, a)
		}
	}

	// casdoor-go-sdk's UpdateUserById: the old id in the query, the whole
	// User object, as text/plain JSON.
	u["name"], u["displayName"] = "vera", "Vera V."
	u["password"] = "***" // Casdoor's mask: unchanged
	u["isAdmin"], u["score"], u["address"], u["properties"], u["roles"] = true, 7, []any{"x"}, map[string]any{"a": "b"}, nil
	a = manage(t, h.UpdateUser, http.MethodPost, PathUpdateUser+"?id="+org+"/"+name, "text/plain;charset=UTF-8", jsonBody(u))
	if a.status != 200 || a.body["status"] != "ok" || a.body["data"] != "Affected" {
		t.Fatalf("update-user: %+v", a)
	}
	evs := rec.take()
	if len(evs) != 1 || evs[0].Type != events.GuestUpgraded || evs[0].UserID != sub || evs[0].ClientID != "backend" {
		t.Fatalf("update-user events: %+v", evs)
	}
	got := manage(t, h.GetUser, http.MethodGet, PathGetUser+"?id="+org+"/vera", "", nil).body["data"].(map[string]any)
	if got["id"] != sub || got["tag"] != model.TagNormal || got["displayName"] != "Vera V." || got["isAdmin"] != false || got["password"] != "" {
		t.Fatalf("after update-user: %v", got)
	}
	// The same object again changes nothing; columns limit the update.
	if a := manage(t, h.UpdateUser, http.MethodPost, PathUpdateUser+"?id="+org+"/vera", "application/json", jsonBody(got)); a.body["data"] != "Unaffected" {
		t.Fatalf("update-user without a change: %+v", a)
	}
	got["displayName"], got["name"] = "Ignored", "ignored-name"
	if a := manage(t, h.UpdateUser, http.MethodPost, PathUpdateUser+"?id="+org+"/vera&columns=password", "application/json", jsonBody(got)); a.body["data"] != "Unaffected" {
		t.Fatalf("update-user of other columns: %+v", a)
	}
	// The user's own Bearer update keeps working as before.
	if a := call(t, h.UpdateUser, form(PathUpdateUser, url.Values{"displayName": {"Vera"}}, "Authorization", "Bearer "+tok["access_token"].(string))); a.status != 200 || a.body["data"] != "Affected" {
		t.Fatalf("own update-user: %+v", a)
	}

	// set-password, multipart as both SDKs send it: no old password needed,
	// a wrong one refused, a right one accepted.
	setPW := func(fields map[string]string) answer {
		ct, body := multipartBody(fields)
		return manage(t, h.SetPassword, http.MethodPost, PathSetPassword, ct, body)
	}
	if a := setPW(map[string]string{"userOwner": org, "userName": "vera", "oldPassword": "", "newPassword": "vera-password-1"}); a.status != 200 || a.body["status"] != "ok" {
		t.Fatalf("set-password: %+v", a)
	}
	if a := setPW(map[string]string{"userOwner": org, "userName": "vera", "oldPassword": "wrong-password", "newPassword": "vera-password-2"}); a.status != 400 || a.body["data"] != accounts.CodeWrongPassword {
		t.Fatalf("set-password with a wrong old one: %+v", a)
	}
	if a := setPW(map[string]string{"userOwner": org, "userName": "vera", "oldPassword": "vera-password-1", "newPassword": "vera-password-2"}); a.status != 200 {
		t.Fatalf("set-password with the old one: %+v", a)
	}
	if a := call(t, h.Token, form(PathToken, url.Values{"grant_type": {"password"}, "username": {"vera"}, "password": {"vera-password-2"}, "client_id": {"app"}, "client_secret": {"app-secret"}})); a.status != 200 {
		t.Fatalf("sign-in with the password set: %+v", a)
	}
	for _, c := range []struct {
		fields map[string]string
		status int
	}{
		{map[string]string{"userOwner": org, "userName": "nobody", "newPassword": "some-password"}, 404},
		{map[string]string{"userOwner": "other", "userName": "vera", "newPassword": "some-password"}, 404},
		{map[string]string{"userOwner": org, "userName": "vera"}, 400},
		{map[string]string{"userName": "vera", "newPassword": "some-password"}, 400},
		{map[string]string{"userOwner": org, "userName": "vera", "newPassword": "short"}, 400},
	} {
		if a := setPW(c.fields); a.status != c.status || a.body["status"] != "error" {
			t.Errorf("set-password %v: %+v, want %d", c.fields, a, c.status)
		}
	}
	rec.take()

	// add-user, as casdoor-nodejs-sdk sends it; then a refused one.
	a = manage(t, h.AddUser, http.MethodPost, PathAddUser+"?id="+org+"/walt", "application/json",
		jsonBody(map[string]any{"owner": org, "name": "walt", "createdTime": "2024-01-01T00:00:00Z", "password": "walt-password", "displayName": "Walt", "isAdmin": false}))
	if a.status != 200 || a.body["data"] != "Affected" {
		t.Fatalf("add-user: %+v", a)
	}
	if evs := rec.take(); len(evs) != 1 || evs[0].Type != events.UserCreated || evs[0].ClientID != "backend" {
		t.Fatalf("add-user events: %+v", evs)
	}
	for _, c := range []struct {
		body   map[string]any
		status int
	}{
		{map[string]any{"owner": org, "name": "WALT"}, 409},
		{map[string]any{"owner": "other", "name": "xavier"}, 400},
		{map[string]any{"owner": org, "name": "admin"}, 400},
		{map[string]any{"owner": org}, 400},
		{map[string]any{"owner": org, "name": "yara", "password": "short"}, 400},
	} {
		if a := manage(t, h.AddUser, http.MethodPost, PathAddUser, "application/json", jsonBody(c.body)); a.status != c.status || a.body["status"] != "error" {
			t.Errorf("add-user %v: %+v, want %d", c.body, a, c.status)
		}
	}

	// get-users: all, paged (data2 the count), by tag.
	guestOf(t, h)
	rec.take()
	list := func(q string) ([]any, any) {
		a := manage(t, h.GetUsers, http.MethodGet, PathGetUsers+"?owner="+org+q, "", nil)
		users, ok := a.body["data"].([]any)
		if a.status != 200 || !ok {
			t.Fatalf("get-users %s: %+v", q, a)
		}
		return users, a.body["data2"]
	}
	if users, _ := list(""); len(users) != 3 || users[0].(map[string]any)["name"] != "vera" {
		t.Fatalf("get-users: %v", users)
	}
	if users, total := list("&p=2&pageSize=2"); len(users) != 1 || total != float64(3) {
		t.Fatalf("page 2: %v %v", users, total)
	}
	if users, total := list("&p=1&pageSize=2"); len(users) != 2 || total != float64(3) || users[1].(map[string]any)["name"] != "walt" {
		t.Fatalf("page 1: %v %v", users, total)
	}
	if users, total := list("&field=tag&value=normal-user&p=1&pageSize=10"); len(users) != 2 || total != float64(2) {
		t.Fatalf("normal users: %v %v", users, total)
	}
	if users, _ := list("&p=9&pageSize=10"); len(users) != 0 {
		t.Fatalf("a page past the end: %v", users)
	}
	a = manage(t, h.GetUsers, http.MethodGet, PathGetUsers+"?owner=other", "", nil)
	if users, _ := a.body["data"].([]any); a.status != 200 || users == nil || len(users) != 0 {
		t.Fatalf("another organization's users: %+v", a)
	}
	for _, q := range []string{"p=0&pageSize=10", "p=1&pageSize=0", "p=1&pageSize=1001", "p=x&pageSize=1", "p=1001&pageSize=1000"} {
		if a := manage(t, h.GetUsers, http.MethodGet, PathGetUsers+"?"+q, "", nil); a.status != 400 {
			t.Errorf("get-users %s: %+v, want 400", q, a)
		}
	}

	// delete-user, by the body (casdoor-go-sdk) or the id; a second time
	// it is Unaffected, as in Casdoor.
	a = manage(t, h.DeleteUser, http.MethodPost, PathDeleteUser, "text/plain;charset=UTF-8", jsonBody(map[string]any{"owner": org, "name": "walt", "isAdmin": false}))
	if a.status != 200 || a.body["data"] != "Affected" {
		t.Fatalf("delete-user: %+v", a)
	}
	if evs := rec.take(); len(evs) != 1 || evs[0].Type != events.UserDeleted || evs[0].ClientID != "backend" || evs[0].Data["cause"] != "api" {
		t.Fatalf("delete-user events: %+v", evs)
	}
	if a := manage(t, h.DeleteUser, http.MethodPost, PathDeleteUser+"?id="+org+"/walt", "", nil); a.status != 200 || a.body["data"] != "Unaffected" {
		t.Fatalf("delete-user again: %+v", a)
	}

	// update-user refusals.
	for _, c := range []struct {
		target, ct string
		body       []byte
		status     int
	}{
		{PathUpdateUser + "?id=" + org + "/nobody", "application/json", jsonBody(map[string]any{"name": "x"}), 404},
		{PathUpdateUser + "?id=" + org + "/vera", "application/json", jsonBody(map[string]any{"name": "root"}), 400},
		{PathUpdateUser + "?id=vera", "application/json", []byte(`{}`), 400},
		{PathUpdateUser + "?id=" + org + "/vera", "application/json", []byte(`{"name":"a","name":"b"}`), 400},
		{PathUpdateUser + "?id=" + org + "/vera", "application/json", []byte(`[]`), 400},
		{PathUpdateUser + "?id=" + org + "/vera", "application/json", []byte(`{"name":"vera"} {}`), 400},
		{PathUpdateUser + "?id=" + org + "/vera", "application/x-www-form-urlencoded", []byte(`name=x`), 400},
	} {
		if a := manage(t, h.UpdateUser, http.MethodPost, c.target, c.ct, c.body); a.status != c.status || a.body["status"] != "error" {
			t.Errorf("update-user %s %s: %+v, want %d", c.target, c.body, a, c.status)
		}
	}
	guest := guestOf(t, h)
	gname := claims(t, guest["access_token"].(string))["name"].(string)
	if a := manage(t, h.UpdateUser, http.MethodPost, PathUpdateUser+"?id="+org+"/"+gname, "application/json", jsonBody(map[string]any{"name": "VERA"})); a.status != 409 || a.body["data"] != accounts.CodeNameTaken {
		t.Fatalf("rename to a taken name: %+v", a)
	}
}

// Authgear's anonymous user API, as @authgear/web calls it, and its
// refusals in Authgear's envelope.
func TestAnonymousUserAPI(t *testing.T) {
	t.Parallel()
	h, rec := newSDKHandler(t)
	signup := func(body string) answer {
		return call(t, h.AnonymousSignup, req(http.MethodPost, PathAnonymousSignup, "application/json", []byte(body)))
	}
	a := signup(`{"client_id":"spa","session_type":"refresh_token"}`)
	res, _ := a.body["result"].(map[string]any)
	if a.status != 200 || res["token_type"] != "Bearer" || res["access_token"] == nil || res["refresh_token"] == nil || res["id_token"] == nil || res["expires_in"] != float64(3600) {
		t.Fatalf("signup: %+v", a)
	}
	if len(res) != 5 {
		t.Fatalf("signup result has more than Authgear's token response: %v", res)
	}
	sub := claims(t, res["access_token"].(string))["sub"]
	if evs := rec.take(); len(evs) != 1 || evs[0].Type != events.GuestCreated || evs[0].Data["via"] != "web" || evs[0].ClientID != "spa" {
		t.Fatalf("signup events: %+v", evs)
	}
	// With the stored refresh token: the same guest.
	a = signup(`{"client_id":"spa","session_type":"refresh_token","refresh_token":"` + res["refresh_token"].(string) + `"}`)
	res2, _ := a.body["result"].(map[string]any)
	if a.status != 200 || claims(t, res2["access_token"].(string))["sub"] != sub {
		t.Fatalf("signup with a refresh token: %+v", a)
	}
	rt := res2["refresh_token"].(string)

	for _, c := range []struct {
		name, ct, body string
		status         int
		reason         string
	}{
		{"text/plain", "text/plain", `{"client_id":"spa","session_type":"refresh_token"}`, 400, "InvalidContentType"},
		{"unknown member", "application/json", `{"client_id":"spa","session_type":"refresh_token","x":"y"}`, 400, "ValidationFailed"},
		{"not a string", "application/json", `{"client_id":"spa","session_type":1}`, 400, "ValidationFailed"},
		{"no session_type", "application/json", `{"client_id":"spa"}`, 400, "ValidationFailed"},
		{"cookie sessions", "application/json", `{"client_id":"spa","session_type":"cookie"}`, 400, "ValidationFailed"},
		{"unknown client", "application/json", `{"client_id":"nobody","session_type":"refresh_token"}`, 400, "Invalid"},
		{"client without web guests", "application/json", `{"client_id":"app","session_type":"refresh_token"}`, 400, "Invalid"},
		{"spent refresh token", "application/json", `{"client_id":"spa","session_type":"refresh_token","refresh_token":"` + res["refresh_token"].(string) + `"}`, 400, "InvalidGrant"},
		{"too large", "application/json", `{"client_id":"` + strings.Repeat("a", 5000) + `"}`, 413, "RequestEntityTooLarge"},
	} {
		a := call(t, h.AnonymousSignup, req(http.MethodPost, PathAnonymousSignup, c.ct, []byte(c.body)))
		e, _ := a.body["error"].(map[string]any)
		if a.status != c.status || e["reason"] != c.reason || e["message"] == "" {
			t.Errorf("signup, %s: %+v, want %d %s", c.name, a, c.status, c.reason)
		}
	}
	// The refused reuse above ended the session (reuse detection): a new guest.
	rt = signup(`{"client_id":"spa","session_type":"refresh_token"}`).body["result"].(map[string]any)["refresh_token"].(string)

	promo := func(body string) answer {
		return call(t, h.AnonymousPromotionCode, req(http.MethodPost, PathPromotionCode, "application/json", []byte(body)))
	}
	a = promo(`{"session_type":"refresh_token","refresh_token":"` + rt + `"}`)
	pres, _ := a.body["result"].(map[string]any)
	code, _ := pres["promotion_code"].(string)
	if a.status != 200 || code == "" || pres["expire_at"] == nil {
		t.Fatalf("promotion code: %+v", a)
	}
	if _, err := time.Parse(time.RFC3339, pres["expire_at"].(string)); err != nil {
		t.Fatalf("expire_at: %v", err)
	}
	for _, c := range []struct {
		name, body string
		status     int
		reason     string
	}{
		{"no refresh token", `{"session_type":"refresh_token"}`, 401, "Unauthorized"},
		{"bad refresh token", `{"session_type":"refresh_token","refresh_token":"a.b.c"}`, 400, "InvalidGrant"},
		{"client_id is not Authgear's", `{"session_type":"refresh_token","refresh_token":"` + rt + `","client_id":"spa"}`, 400, "ValidationFailed"},
	} {
		a := promo(c.body)
		e, _ := a.body["error"].(map[string]any)
		if a.status != c.status || e["reason"] != c.reason {
			t.Errorf("promotion code, %s: %+v, want %d %s", c.name, a, c.status, c.reason)
		}
	}

	// The authorization endpoint's side: the login_hint resolves once.
	hint := "https://authgear.com/login_hint?type=anonymous&promotion_code=" + url.QueryEscape(code)
	g, promote, err := h.Promotion(context.Background(), hint, "spa")
	if err != nil || !promote || g.ID == "" || !g.IsAnonymous() {
		t.Fatalf("promotion: %+v %v %v", g, promote, err)
	}
	if _, promote, err := h.Promotion(context.Background(), hint, "spa"); !promote || err == nil {
		t.Fatalf("promotion again: %v %v", promote, err)
	}
	if _, promote, err := h.Promotion(context.Background(), "alice", "spa"); promote || err != nil {
		t.Fatalf("an ordinary login_hint: %v %v", promote, err)
	}
}

func TestPromotionLoginHint(t *testing.T) {
	t.Parallel()
	for hint, want := range map[string]string{
		"https://authgear.com/login_hint?type=anonymous&promotion_code=ABC":                "ABC",
		"https://authgear.com/login_hint?promotion_code=A%2BB&type=anonymous":              "A+B",
		"https://authgear.com/login_hint?type=anonymous":                                   "",
		"https://authgear.com/login_hint?type=anonymous&promotion_code=":                   "",
		"https://authgear.com/login_hint?type=anonymous&promotion_code=A&promotion_code=B": "",
		"https://authgear.com/login_hint?type=app2app&promotion_code=ABC":                  "",
		"http://authgear.com/login_hint?type=anonymous&promotion_code=ABC":                 "",
		"https://evil.example/login_hint?type=anonymous&promotion_code=ABC":                "",
		"https://authgear.com/other?type=anonymous&promotion_code=ABC":                     "",
		"alice": "",
		"":      "",
	} {
		code, ok := PromotionCode(hint)
		if code != want || ok != (want != "") {
			t.Errorf("%q: %q %v, want %q", hint, code, ok, want)
		}
	}
}

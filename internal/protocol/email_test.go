package protocol

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/mail"
	"github.com/guestauth/caddy-guestauth/internal/mail/smtptest"
	"github.com/guestauth/caddy-guestauth/storage"
)

func newEmailHandler(t *testing.T) (*Handler, *smtptest.Server) {
	t.Helper()
	srv := smtptest.Start(t, smtptest.Options{})
	h := newHandlerCfg(t, func(st storage.Backend, cfg *accounts.Config) {
		m, err := mail.New(mail.Config{Store: st, SMTP: srv.Addr, From: "noreply@id.example.com", StartTLS: mail.StartTLSNever, Poll: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		m.Start()
		t.Cleanup(m.Stop)
		cfg.Mailer = m
		cfg.MailAddressLimit = accounts.Limit{Burst: 3, Interval: time.Hour}
		cfg.Argon2 = accounts.Argon2Params{MemoryKiB: 1024, Time: 1, Threads: 1}
	})
	h.LinkBase = func(*http.Request) string { return testIssuer + "/auth/" }
	return h, srv
}

func mailToken(t *testing.T, srv *smtptest.Server, n int, page string) string {
	t.Helper()
	m := srv.Wait(t, n, 10*time.Second)[n-1]
	link := smtptest.Link(m, testIssuer+"/auth/"+page+"?token=")
	if link == "" {
		t.Fatalf("no %s link in %q", page, m.Text)
	}
	u, _ := url.Parse(link)
	return u.Query().Get("token")
}

// /api/update-user takes Casdoor's email field and starts verification;
// an unchanged or empty one (Casdoor's SDKs send the whole user) mails
// nothing; the JSON reset endpoints answer alike for unknown addresses;
// UserInfo carries the address with scope email only.
func TestEmailAPI(t *testing.T) {
	h, srv := newEmailHandler(t)
	tok := call(t, h.Token, form(PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {GuestCode}, "client_id": {"app"}, "client_secret": {"app-secret"}})).body
	access := tok["access_token"].(string)
	bearer := func(path string, body url.Values) *http.Request {
		return form(path, body, "Authorization", "Bearer "+access)
	}
	a := call(t, h.UpdateUser, bearer(PathUpdateUser, url.Values{"email": {"not-an-address"}, "name": {"olive"}}))
	if a.status != 400 || a.body["status"] != "error" || !strings.Contains(a.body["msg"].(string), "email address") {
		t.Fatalf("bad address: %+v", a)
	}
	a = call(t, h.UpdateUser, bearer(PathUpdateUser, url.Values{"email": {"Olive@ID.example.com"}, "name": {"olive"}, "password": {"correct horse"}}))
	data, _ := a.body["data2"].(map[string]any)
	if a.status != 200 || data["email"] != "Olive@id.example.com" || data["emailVerified"] != false || data["name"] != "olive" {
		t.Fatalf("update-user with email: %+v", a)
	}
	if a.body["access_token"] != nil {
		access = a.body["access_token"].(string)
	}
	verify := mailToken(t, srv, 1, accounts.LinkVerify)
	// The whole user again, unchanged: no second mail.
	if a := call(t, h.UpdateUser, bearer(PathUpdateUser, url.Values{"email": {"olive@id.example.com"}, "displayName": {"Olive"}})); a.status != 200 {
		t.Fatalf("unchanged email: %+v", a)
	}
	if _, _, err := h.Accounts.VerifyEmail(t.Context(), nil, verify, testIssuer); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("%d mails, want 1", n)
	}
	info := call(t, h.UserInfo, bearer(PathUserInfo, nil))
	if info.status != 200 || info.body["email"] != nil || info.body["https://authgear.com/claims/user/is_verified"] != true {
		t.Fatalf("userinfo without scope email: %+v", info)
	}

	unknown := call(t, h.ForgotPassword, form(PathForgotPassword, url.Values{"email": {"nobody@id.example.com"}}))
	known := call(t, h.ForgotPassword, form(PathForgotPassword, url.Values{"email": {"olive@id.example.com"}}))
	if unknown.status != 200 || known.status != 200 || unknown.body["data"] != known.body["data"] || known.body["status"] != "ok" {
		t.Fatalf("forgot-password: %+v %+v", unknown, known)
	}
	reset := mailToken(t, srv, 2, accounts.LinkReset)
	if a := call(t, h.ResetPassword, form(PathResetPassword, url.Values{"token": {reset}, "password": {"x"}})); a.status != 400 {
		t.Fatalf("short password: %+v", a)
	}
	if a := call(t, h.ResetPassword, form(PathResetPassword, url.Values{"token": {reset}, "password": {"battery staple"}})); a.status != 200 || a.body["status"] != "ok" {
		t.Fatalf("reset: %+v", a)
	}
	if a := call(t, h.ResetPassword, form(PathResetPassword, url.Values{"token": {reset}, "password": {"battery staple"}})); a.status != 401 || !strings.Contains(a.body["msg"].(string), "already used") {
		t.Fatalf("reset twice: %+v", a)
	}
	// The reset ended the API session too.
	if a := call(t, h.GetAccount, bearer(PathGetAccount, nil)); a.status != 401 {
		t.Fatalf("session after reset: %+v", a)
	}
	if a := call(t, h.Token, form(PathToken, url.Values{"grant_type": {"password"}, "username": {"olive@id.example.com"}, "password": {"battery staple"}, "client_id": {"app"}, "client_secret": {"app-secret"}})); a.status != 200 {
		t.Fatalf("password grant by address: %+v", a)
	}
	for range 3 {
		call(t, h.ForgotPassword, form(PathForgotPassword, url.Values{"email": {"nobody@id.example.com"}}))
	}
	if a := call(t, h.ForgotPassword, form(PathForgotPassword, url.Values{"email": {"nobody@id.example.com"}})); a.status != 429 || a.header.Get("Retry-After") == "" {
		t.Fatalf("limit: %+v", a)
	}
	if a := call(t, h.ForgotPassword, form(PathForgotPassword, url.Values{"email": {"x"}})); a.status != 400 {
		t.Fatalf("malformed: %+v", a)
	}
}

// Without email, the email field and endpoints are refused, not ignored.
func TestEmailAPIWithoutEmail(t *testing.T) {
	h := newHandler(t)
	if a := call(t, h.ForgotPassword, form(PathForgotPassword, url.Values{"email": {"a@id.example.com"}})); a.status != 404 {
		t.Fatalf("forgot-password: %+v", a)
	}
	tok := call(t, h.Token, form(PathToken, url.Values{"grant_type": {"authorization_code"}, "code": {GuestCode}, "client_id": {"app"}, "client_secret": {"app-secret"}})).body
	r := form(PathUpdateUser, url.Values{"email": {"a@id.example.com"}}, "Authorization", "Bearer "+tok["access_token"].(string))
	if a := call(t, h.UpdateUser, r); a.status != 404 {
		t.Fatalf("update-user email: %+v", a)
	}
	r = form(PathUpdateUser, url.Values{"email": {""}, "name": {"olive"}}, "Authorization", "Bearer "+tok["access_token"].(string))
	if a := call(t, h.UpdateUser, r); a.status != 200 {
		t.Fatalf("update-user with an empty email: %+v", a)
	}
}

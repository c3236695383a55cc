package e2e

// casdoor-go-sdk (Casdoor's Go SDK, the module as apps import it) against
// a real Caddy: its token calls (x/oauth2, the secret in the body), its
// ParseJwtToken with the certificate PEM from /.well-known/jwks, and its
// user API (HTTP Basic, JSON sent as text/plain, multipart set-password).

import (
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/casdoor/casdoor-go-sdk/casdoorsdk"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
)

// sdkCertificate is the PEM docs/sdks.md tells Casdoor SDK users to make:
// the certificate (x5c) of the newest RS256 key of /.well-known/jwks.
func (s *server) sdkCertificate() string {
	s.t.Helper()
	r := s.get("/.well-known/jwks", "")
	if r.Status != http.StatusOK {
		s.t.Fatalf("certificate: /.well-known/jwks: %d %s", r.Status, r.Body)
	}
	set, err := jwk.Parse(r.Body)
	if err != nil {
		s.t.Fatalf("certificate: %v", err)
	}
	var b64 []byte
	for i := range set.Len() { // oldest first: the last RS256 key signs
		k, _ := set.Key(i)
		if k.Algorithm() == jwa.RS256 && k.X509CertChain() != nil && k.X509CertChain().Len() > 0 {
			b64, _ = k.X509CertChain().Get(0)
		}
	}
	der, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil || len(der) == 0 {
		s.t.Fatalf("certificate: no RS256 key with x5c in %s (%v)", r.Body, err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// docCertificate runs the command docs/sdks.md gives for the certificate
// (curl, jq, fold) against base and returns the PEM it writes. Without
// those tools it returns "" (and fails under CI).
func (s *server) docCertificate(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"bash", "curl", "jq", "fold"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("CI: %s is required for docs/sdks.md's certificate command (.ci/run installs curl and jq)", tool)
			}
			t.Logf("docs/sdks.md's certificate command not run: %v", err)
			return ""
		}
	}
	doc, err := os.ReadFile("../docs/sdks.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```sh\n(curl -s http://localhost:8080/\\.well-known/jwks.*?)\n```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/sdks.md: no certificate command (```sh curl -s http://localhost:8080/.well-known/jwks ...)")
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", strings.Replace(string(m[1]), "http://localhost:8080", s.Base, 1))
	cmd.Dir = t.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docs/sdks.md's certificate command: %v\n%s", err, out)
	}
	pemText, err := os.ReadFile(cmd.Dir + "/guestauth-cert.pem")
	if err != nil {
		t.Fatalf("docs/sdks.md's certificate command wrote no guestauth-cert.pem: %v", err)
	}
	return string(pemText)
}

// codeThroughPages follows a sign-in URL in browser b: the authorization
// endpoint sends it to the sign-in page, where it signs up (or in, when
// signUp is false) with name and password, and back with a code to
// redirect. It returns the callback's parameters.
func (b *jarBrowser) codeThroughPages(base, authURL, redirect string, signUp bool, name, password string) url.Values {
	b.t.Helper()
	first := b.get(authURL)
	loc := first.Header.Get("Location")
	if first.Status != http.StatusSeeOther || !strings.HasPrefix(loc, "/auth/signin?") {
		b.t.Fatalf("authorization request %s: want the sign-in page, got %d %q: %s", authURL, first.Status, loc, first.Body)
	}
	back := formReturnTo(b.t, b.get(base+loc))
	page := "/auth/signin"
	if signUp {
		page = "/auth/signup"
	}
	if r := b.submit(base, page, url.Values{"username": {name}, "password": {password}, "return_to": {back}}); r.Status != http.StatusSeeOther {
		b.t.Fatalf("%s as %s: %d %s", page, name, r.Status, r.Body)
	}
	return codeFrom(b.t, b.get(base+back), redirect)
}

// casdoor-go-sdk: a guest by GetOAuthToken("guest-user"), ParseJwtToken
// (owner, id, tag), RefreshOAuthToken, a code from the pages (sign-up
// through GetSigninUrl, redeemed without redirect_uri), the user API of a
// manage_users client (GetUser, GetUsers, UpdateUser, UpdateUserById
// renaming the guest with the same id, AddUser, SetPassword then a sign-in
// with it, DeleteUser), and a client without manage_users refused.
func TestS18cCasdoorGoSDK(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	s.Start(s.clientsSite())
	cert := s.sdkCertificate()
	if doc := s.docCertificate(t); doc != "" && doc != cert {
		t.Fatalf("docs/sdks.md's certificate command made\n%s\nwant\n%s", doc, cert)
	}
	const app = "my-app"
	sdk := casdoorsdk.NewClient(s.Base, sdkApp, sdkAppSecret, cert, sdkOrg, app)

	guest, err := sdk.GetOAuthToken("guest-user", "")
	if err != nil {
		t.Fatalf("GetOAuthToken(guest-user): %v", err)
	}
	gc, err := sdk.ParseJwtToken(guest.AccessToken)
	if err != nil {
		t.Fatalf("ParseJwtToken: %v", err)
	}
	if gc.Owner != sdkOrg || gc.Id == "" || gc.Id != gc.Subject || gc.Tag != "guest-user" || gc.Name == "" {
		t.Fatalf("ParseJwtToken: owner %q id %q sub %q tag %q name %q", gc.Owner, gc.Id, gc.Subject, gc.Tag, gc.Name)
	}
	next, err := sdk.RefreshOAuthToken(guest.RefreshToken)
	if err != nil || next.AccessToken == guest.AccessToken || next.RefreshToken == guest.RefreshToken {
		t.Fatalf("RefreshOAuthToken: %v", err)
	}
	if nc, err := sdk.ParseJwtToken(next.AccessToken); err != nil || nc.Id != gc.Id {
		t.Fatalf("ParseJwtToken of the refreshed token: %v", err)
	}

	// A code from the pages: sign-up through the SDK's sign-in URL.
	b := newJarBrowser(t)
	q := b.codeThroughPages(s.Base, sdk.GetSigninUrl(sdkAppCB), sdkAppCB, true, "gina", "correct horse battery")
	if q.Get("state") != app {
		t.Fatalf("GetSigninUrl: state %q, want %q", q.Get("state"), app)
	}
	tok, err := sdk.GetOAuthToken(q.Get("code"), q.Get("state"))
	if err != nil {
		t.Fatalf("GetOAuthToken(code): %v", err)
	}
	if c, err := sdk.ParseJwtToken(tok.AccessToken); err != nil || c.Name != "gina" || c.Tag == "guest-user" {
		t.Fatalf("ParseJwtToken of gina's token: %+v, %v", c, err)
	}

	// The user API.
	gina, err := sdk.GetUser("gina")
	if err != nil || gina == nil || gina.Name != "gina" || gina.Owner != sdkOrg || gina.Password != "***" {
		t.Fatalf("GetUser(gina): %+v, %v", gina, err)
	}
	users, err := sdk.GetUsers()
	if err != nil || len(users) != 2 {
		t.Fatalf("GetUsers: %d users, %v", len(users), err)
	}
	gina.DisplayName = "Gina Rossi"
	if ok, err := sdk.UpdateUser(gina); err != nil || !ok {
		t.Fatalf("UpdateUser: %v, %v", ok, err)
	}
	if u, err := sdk.GetUser("gina"); err != nil || u.DisplayName != "Gina Rossi" {
		t.Fatalf("GetUser after UpdateUser: %+v, %v", u, err)
	}
	// A guest renamed (Casdoor's upgrade by name) keeps its id.
	g, err := sdk.GetUser(gc.Name)
	if err != nil || g == nil || g.Id != gc.Id {
		t.Fatalf("GetUser(the guest %s): %+v, %v", gc.Name, g, err)
	}
	g.Name = "greta"
	if ok, err := sdk.UpdateUserById(sdkOrg+"/"+gc.Name, g); err != nil || !ok {
		t.Fatalf("UpdateUserById (rename): %v, %v", ok, err)
	}
	if u, err := sdk.GetUser("greta"); err != nil || u == nil || u.Id != gc.Id || u.Tag != "normal-user" {
		t.Fatalf("GetUser(greta) after the rename: want the guest's id %s, tag normal-user: %+v, %v", gc.Id, u, err)
	}

	if ok, err := sdk.AddUser(&casdoorsdk.User{Owner: sdkOrg, Name: "bruno", DisplayName: "Bruno"}); err != nil || !ok {
		t.Fatalf("AddUser: %v, %v", ok, err)
	}
	if ok, err := sdk.SetPassword(sdkOrg, "bruno", "", "brunos long password"); err != nil || !ok {
		t.Fatalf("SetPassword: %v, %v", ok, err)
	}
	q = newJarBrowser(t).codeThroughPages(s.Base, sdk.GetSigninUrl(sdkAppCB), sdkAppCB, false, "bruno", "brunos long password")
	if tok, err := sdk.GetOAuthToken(q.Get("code"), q.Get("state")); err != nil {
		t.Fatalf("GetOAuthToken after SetPassword: %v", err)
	} else if c, err := sdk.ParseJwtToken(tok.AccessToken); err != nil || c.Name != "bruno" {
		t.Fatalf("bruno's token: %+v, %v", c, err)
	}
	if ok, err := sdk.DeleteUser(&casdoorsdk.User{Owner: sdkOrg, Name: "bruno"}); err != nil || !ok {
		t.Fatalf("DeleteUser: %v, %v", ok, err)
	}
	if u, err := sdk.GetUser("bruno"); err != nil || u != nil {
		t.Fatalf("GetUser after DeleteUser: %+v, %v", u, err)
	}

	// Without manage_users: refused, nothing changed.
	plain := casdoorsdk.NewClient(s.Base, sdkPlain, sdkPlainSec, cert, sdkOrg, app)
	if u, err := plain.GetUser("gina"); err == nil {
		t.Fatalf("GetUser by a client without manage_users: %+v", u)
	}
	if ok, err := plain.DeleteUser(&casdoorsdk.User{Owner: sdkOrg, Name: "gina"}); err == nil || ok {
		t.Fatalf("DeleteUser by a client without manage_users: %v, %v", ok, err)
	}
	if u, err := sdk.GetUser("gina"); err != nil || u == nil {
		t.Fatalf("gina after the refused delete: %+v, %v", u, err)
	}
}

// Package oidcrptest starts a real OpenID Provider nobody here wrote for
// tests: zitadel/oidc's example OP, in-process on its own port. Only tests
// import it.
package oidcrptest

import (
	"context"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The OP's confidential client, and its users' password.
const (
	ClientID     = "web"
	ClientSecret = "secret"
	Password     = "pw"
)

// Users are the OP's users by username, with their subjects.
var Users = map[string]string{"alice": "u1", "bob": "u2"}

type users map[string]*storage.User

func (u users) GetUserByID(id string) *storage.User { return u[id] }
func (u users) GetUserByUsername(name string) *storage.User {
	for _, x := range u {
		if x.Username == name {
			return x
		}
	}
	return nil
}
func (u users) ExampleClientID() string { return storage.ServiceUserID }

// claimsInIDToken makes the OP put the profile claims in the ID token (as
// Google does) rather than only in userinfo.
type claimsInIDToken struct{ *storage.Storage }
type idtClient struct{ op.Client }

func (idtClient) IDTokenUserinfoClaimsAssertion() bool { return true }
func (s claimsInIDToken) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return idtClient{c}, nil
}

// Start runs the OP until the test ends and returns its issuer
// (http://localhost:<port>/); the client accepts redirectURIs.
func Start(t testing.TB, redirectURIs ...string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := fmt.Sprintf("http://localhost:%d/", ln.Addr().(*net.TCPAddr).Port)
	st := storage.NewStorageWithClients(users{
		"u1": {ID: "u1", Username: "alice", Password: Password, Email: "alice@example.test", EmailVerified: true, FirstName: "Alice"},
		"u2": {ID: "u2", Username: "bob", Password: Password, Email: "bob@example.test", EmailVerified: true, FirstName: "Bob"},
	}, map[string]*storage.Client{ClientID: storage.WebClient(ClientID, ClientSecret, redirectURIs...)})
	router := exampleop.SetupServer(issuer, claimsInIDToken{st}, slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	srv := &http.Server{Handler: router} //nolint:gosec // G112: a test server
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return issuer
}

var idRe = regexp.MustCompile(`name="id" value="([^"]*)"`)

// SignIn answers the OP's login page (page, its body) as user: the
// request to send next.
func SignIn(page *http.Response, body, user string) (*http.Request, error) {
	m := idRe.FindStringSubmatch(body)
	if m == nil {
		return nil, fmt.Errorf("no login form at %s (%d): %.300s", page.Request.URL, page.StatusCode, body)
	}
	action, _ := page.Request.URL.Parse("/login/username")
	v := url.Values{"id": {html.UnescapeString(m[1])}, "username": {user}, "password": {Password}}
	req, err := http.NewRequest(http.MethodPost, action.String(), strings.NewReader(v.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req, nil
}

package caddymodule

import (
	"net/http"
	"net/url"
	"strings"
)

// Paths of the endpoints the module serves itself.
//
//nolint:gosec // G101: URL paths, not credentials
const (
	PathToken        = "/oauth/token"                  // Hanzo IAM
	PathTokenCasdoor = "/api/login/oauth/access_token" // Casdoor
	pathDiscovery    = "/.well-known/openid-configuration"
	pathJWKS         = "/.well-known/jwks.json"
)

// buildRoutes maps the module's own paths to their handlers. Discovery and
// JWKS live under the issuer's path, so a configured issuer such as
// https://example.com/auth is served at the URL its `issuer` names.
func (g *GuestAuth) buildRoutes() {
	base := ""
	if g.issuer != "" {
		u, _ := url.Parse(g.issuer) // validated in Provision
		base = strings.TrimSuffix(u.EscapedPath(), "/")
	}
	g.routes = map[string]func(http.ResponseWriter, *http.Request) error{
		PathToken:            g.serveToken,
		PathTokenCasdoor:     g.serveToken,
		PathChallenge:        g.serveChallenge,
		PathRevoke:           g.serveRevoke,
		PathUserInfo:         g.serveUserInfo,
		PathUserInfoOAuth:    g.serveUserInfo,
		PathUpdateUser:       g.serveUpdateUser,
		PathGetAccount:       g.serveGetAccount,
		PathLogout:           g.serveLogout,
		base + pathDiscovery: g.serveDiscovery,
		base + pathJWKS:      g.serveJWKS,
	}
}

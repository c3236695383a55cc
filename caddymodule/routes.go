package caddymodule

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/guestauth/caddy-guestauth/internal/protocol"
)

// route is one of the module's own endpoints: the methods it takes, its
// handler, and the answer to any other method (405 in its protocol).
type route struct {
	methods []string
	serve   func(http.ResponseWriter, *http.Request) error
	refuse  protocol.Refusal
	// cors: browsers on the cors_origins may call it (protocol.CORS).
	cors bool
}

// buildRoutes is the one route table: the module's own paths (path →
// methods → handler), then the pages under their prefix (ServeHTTP), then
// the proxy path for everything else. Discovery and JWKS live under the
// issuer's path, so a configured issuer such as https://example.com/auth is
// served at the URL its `issuer` names.
func (g *GuestAuth) buildRoutes() {
	base := ""
	if g.issuer != "" {
		u, _ := url.Parse(g.issuer) // validated in Provision
		base = strings.TrimSuffix(u.EscapedPath(), "/")
	}
	post := []string{http.MethodPost}
	get := []string{http.MethodGet, http.MethodHead}
	p := g.protocol
	g.routes = map[string]route{
		protocol.PathToken:            {methods: post, serve: p.Token, refuse: protocol.RefuseToken, cors: true},
		protocol.PathTokenCasdoor:     {methods: post, serve: p.Token, refuse: protocol.RefuseToken, cors: true},
		protocol.PathRefreshCasdoor:   {methods: post, serve: p.RefreshCasdoor, refuse: protocol.RefuseToken, cors: true},
		protocol.PathRevoke:           {methods: post, serve: p.Revoke, refuse: protocol.RefuseRevoke, cors: true},
		protocol.PathChallenge:        {methods: post, serve: p.Challenge, refuse: protocol.RefuseChallenge},
		protocol.PathUpdateUser:       {methods: post, serve: p.UpdateUser, refuse: protocol.RefuseEnvelope, cors: true},
		protocol.PathGetAccount:       {methods: get, serve: p.GetAccount, refuse: protocol.RefuseGet, cors: true},
		protocol.PathLogout:           {methods: post, serve: p.Logout, refuse: protocol.RefuseEnvelope, cors: true},
		protocol.PathDeleteAccount:    {methods: post, serve: p.DeleteAccount, refuse: protocol.RefuseEnvelope, cors: true},
		protocol.PathGetUser:          {methods: get, serve: p.GetUser, refuse: protocol.RefuseGet, cors: true},
		protocol.PathGetUsers:         {methods: get, serve: p.GetUsers, refuse: protocol.RefuseGet, cors: true},
		protocol.PathAddUser:          {methods: post, serve: p.AddUser, refuse: protocol.RefuseEnvelope, cors: true},
		protocol.PathDeleteUser:       {methods: post, serve: p.DeleteUser, refuse: protocol.RefuseEnvelope, cors: true},
		protocol.PathSetPassword:      {methods: post, serve: p.SetPassword, refuse: protocol.RefuseEnvelope, cors: true},
		protocol.PathAnonymousSignup:  {methods: post, serve: p.AnonymousSignup, refuse: protocol.RefuseChallenge, cors: true},
		protocol.PathPromotionCode:    {methods: post, serve: p.AnonymousPromotionCode, refuse: protocol.RefuseChallenge, cors: true},
		protocol.PathUserInfo:         {methods: []string{http.MethodGet, http.MethodPost}, serve: p.UserInfo, refuse: protocol.RefuseUserInfo, cors: true},
		protocol.PathUserInfoOAuth:    {methods: []string{http.MethodGet, http.MethodPost}, serve: p.UserInfo, refuse: protocol.RefuseUserInfo, cors: true},
		base + protocol.PathDiscovery: {methods: get, serve: p.Discovery, refuse: protocol.RefuseGet},
		base + protocol.PathJWKS:      {methods: get, serve: p.JWKS, refuse: protocol.RefuseGet},
		// Casdoor's jwks_uri serves the same set.
		base + protocol.PathJWKSCasdoor: {methods: get, serve: p.JWKS, refuse: protocol.RefuseGet},

		protocol.PathIntrospect:        {methods: post, serve: p.Introspect, refuse: protocol.RefuseIntrospect, cors: true},
		protocol.PathIntrospectCasdoor: {methods: post, serve: p.Introspect, refuse: protocol.RefuseIntrospect, cors: true},
	}
	// The browser endpoints: a navigation (GET) or a form (POST).
	browser := []string{http.MethodGet, http.MethodPost}
	for _, path := range []string{protocol.PathAuthorize, protocol.PathAuthorizeCasdoor, protocol.PathAuthorizeAuthgear} {
		g.routes[path] = route{methods: browser, serve: p.Authorize, refuse: protocol.RefuseBrowser}
	}
	g.routes[protocol.PathEndSession] = route{methods: browser, serve: p.EndSession, refuse: protocol.RefuseBrowser}
	if g.Browser != nil && len(g.Browser.Providers) > 0 {
		g.routes[protocol.PathProviderStart] = route{methods: post, serve: p.ProviderStart, refuse: protocol.RefuseProviderStart, cors: true}
	}
	if g.Email != nil {
		g.routes[protocol.PathForgotPassword] = route{methods: post, serve: p.ForgotPassword, refuse: protocol.RefuseEnvelope, cors: true}
		g.routes[protocol.PathResetPassword] = route{methods: post, serve: p.ResetPassword, refuse: protocol.RefuseEnvelope, cors: true}
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler: it routes by the table
// of buildRoutes.
func (g *GuestAuth) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	g.headers.Strip(r)
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	setUserPlaceholders(repl, nil)
	if rt, ok := g.routes[r.URL.Path]; ok {
		// The body of the module's endpoints must arrive in time
		// (api_read_timeout); proxied requests are not bounded.
		protocol.SetReadDeadline(w, time.Duration(g.APIReadTimeout), g.logger)
		if rt.cors && g.cors != nil {
			if protocol.IsPreflight(r) {
				g.cors.Preflight(w, r, rt.methods)
				return nil
			}
			g.cors.Apply(w, r)
		}
		if !slices.Contains(rt.methods, r.Method) {
			return rt.refuse(w, strings.Join(rt.methods, ", "))
		}
		return rt.serve(w, r)
	}
	if g.pages != nil && strings.HasPrefix(r.URL.Path, g.Browser.PagesPrefix) {
		return g.pages.Serve(w, r)
	}
	return g.serveProxied(w, r, repl, next)
}

// issuerFor is the issuer for tokens minted or checked on r.
func (g *GuestAuth) issuerFor(r *http.Request) string {
	if g.issuer != "" {
		return g.issuer
	}
	return protocol.RequestOrigin(r)
}

// originFor is the scheme://host the endpoints are served under.
func (g *GuestAuth) originFor(r *http.Request) string {
	if g.origin != "" {
		return g.origin
	}
	return protocol.RequestOrigin(r)
}

// clientIP is Caddy's client IP for r (which honours the server's
// trusted_proxies), as reported in events. Limits key on limitKey instead.
func clientIP(r *http.Request) string {
	ip, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	return ip
}

// limitKey is the key of every per-IP limit (sign-in, guest creation,
// challenges, name changes) for r: the client IP's network, by
// ip_prefix_v4 and ip_prefix_v6 bits, so a client rotating addresses within
// its IPv6 /64 still has one bucket.
func (g *GuestAuth) limitKey(r *http.Request) string {
	return protocol.IPLimitKey(clientIP(r), g.IPPrefixV4, g.IPPrefixV6)
}

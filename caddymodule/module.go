// Package caddymodule is the guest_auth Caddy HTTP handler: it serves the
// token, discovery and JWKS endpoints, and on every other request verifies
// the access token, strips client-sent identity headers and injects verified
// ones before passing the request to the next handler (usually reverse_proxy).
package caddymodule

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/headers"
	"github.com/guestauth/caddy-guestauth/internal/mail"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/outbox"
	"github.com/guestauth/caddy-guestauth/internal/pages"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

func init() {
	caddy.RegisterModule(GuestAuth{})
}

// GuestAuth gives the site behind it guest users: visitors get an account at
// once, with no username or password, through the Casdoor / Hanzo IAM
// `code=guest-user` token request, and the upstream receives verified
// identity headers on every request.
type GuestAuth struct {
	// Where users, sessions, signing keys, limits and webhook events are
	// stored: the path of a bbolt file (a string, as `"storage":
	// "/var/lib/caddy/guestauth.db"`), or a store module named by its kind,
	// `{"kind": "bolt", "path": "..."}` (bolt.Module) or `{"kind":
	// "postgres", "dsn": "..."}` (postgres.Module). Default: the bbolt file
	// `guest_auth/guestauth.db` in Caddy's data directory. Sites and config
	// reloads naming the same store share one open database.
	Storage StorageConfig `json:"storage,omitzero"`

	// Issuer URL written in tokens (`iss`) and served in the discovery
	// document. Default: the origin of each request (scheme and host). Set
	// it in production, especially behind a TLS-terminating proxy. Sites
	// sharing a storage file share signing keys, so each of them must set
	// its issuer (Caddy refuses to start otherwise): a token is accepted
	// only under the issuer it was minted for, and only by a site that
	// configures its client (`aud`).
	Issuer string `json:"issuer,omitempty"`

	// Clients allowed to use the token endpoint.
	Clients []Client `json:"clients,omitempty"`

	// The organization every user belongs to, as Casdoor's SDKs name it:
	// the tokens' `owner` claim, and the <organization>/<name> of user ids
	// in Casdoor's user API (give it to the SDKs as organizationName /
	// orgName). Default: built-in.
	Organization string `json:"organization,omitempty"`

	// Origins (scheme://host[:port], exactly as browsers send them in
	// Origin) whose pages may call the token, refresh, revocation, UserInfo
	// and account endpoints, Casdoor's user API and Authgear's anonymous
	// user API from the browser (CORS, with credentials). A preflight from
	// another origin is answered 403, and its other requests get no CORS
	// headers. Default: none. `*` is not allowed. Discovery and JWKS are
	// open to every origin, as before.
	CORSOrigins []string `json:"cors_origins,omitempty"`

	// Token signing algorithm: RS256 (default), ES256 or EdDSA. Keys are
	// generated on first start and persisted in the storage file.
	SigningAlg string `json:"signing_alg,omitempty"`

	// Lifetime of access and ID tokens. Default: 1h.
	AccessTokenLifetime caddy.Duration `json:"access_token_lifetime,omitempty"`

	// A session (and its refresh token) ends when unused this long.
	// Default: 720h (30 days).
	SessionIdleTimeout caddy.Duration `json:"session_idle_timeout,omitempty"`

	// A session ends this long after sign-in, however much it is used.
	// Default: 2160h (90 days).
	SessionLifetime caddy.Duration `json:"session_lifetime,omitempty"`

	// Clock skew tolerated on token times, 0 to 5m. Default (when unset):
	// 30s; 0 means none.
	ClockSkew *caddy.Duration `json:"clock_skew,omitempty"`

	// Access policy for proxied requests: `none` (default) lets requests
	// without a token through with no identity; `any` answers 401 without a
	// valid token; `user` also answers 403 to guests. A token that is present
	// but invalid or expired is always answered 401, except the
	// session cookie under `none` (see `cookie`).
	Require string `json:"require,omitempty"`

	// Name of a cookie to read the access token from when the request has no
	// `Authorization` header. Only proxied requests read it; the module's own
	// API endpoints take the header only. The cookie is a credential: it is
	// removed from the Cookie header sent upstream, whatever its value (the
	// other cookies are kept), and the upstream gets the identity headers
	// instead. An unsafe request (not GET, HEAD or OPTIONS) it authenticates
	// is refused 403 when cross-origin (Sec-Fetch-Site, else Origin against
	// Host: Go's http.CrossOriginProtection); Bearer requests are not. An
	// invalid or expired cookie, or the cookie sent more than once, is no
	// session: under `require none` the request goes on anonymous, otherwise
	// it is answered 401 invalid_token.
	Cookie string `json:"cookie,omitempty"`

	// Names of the identity headers injected for the upstream.
	Headers HeaderNames `json:"headers,omitempty"`

	// Browser sessions and the built-in pages (see Browser); off when
	// unset. Cannot be combined with `cookie`.
	Browser *Browser `json:"browser,omitempty"`

	// A signed identity header for the upstream (see Assertion); off when
	// unset.
	Assertion *Assertion `json:"assertion,omitempty"`

	// The rate limits (see Limits), in one object: `"limits":
	// {"signin_account": {"burst": 5, "interval": "1m"}, ...}`. Their
	// former top-level names (signin_account_limit, ...) are still read.
	Limits Limits `json:"limits,omitzero"`
	flatLimits

	// Email addresses, password recovery and sign-in links (see Email);
	// off when unset.
	Email *Email `json:"email,omitempty"`

	// Most live sessions a user may have: a sign-in beyond it ends the
	// user's oldest sessions (by sign-in time). Default: 10. 0 means no cap.
	MaxSessionsPerUser *int `json:"max_sessions_per_user,omitempty"`

	// Every per-IP limit (sign-in, guest creation, challenges, name changes)
	// counts a client's network rather than its exact address: the first
	// IPPrefixV4 bits of an IPv4 address (default 32, the address) and the
	// first IPPrefixV6 bits of an IPv6 address (default 64: one end site's
	// /64, within which a client can pick any of 2^64 addresses). An
	// IPv4-mapped IPv6 address counts as IPv4.
	IPPrefixV4 int `json:"ip_prefix_v4,omitempty"`
	IPPrefixV6 int `json:"ip_prefix_v6,omitempty"`

	// Usernames nobody may take by a rename (400 invalid_name), compared
	// case-insensitively after trimming, like the unique-name index. The
	// entry `default` stands for the built-in list (admin, administrator,
	// root, system, support, security, postmaster, webmaster, hostmaster,
	// abuse, noreply, no-reply, guest, anonymous, null, nobody, undefined,
	// help, info, staff, moderator, owner, superuser, sysadmin), so
	// `["default", "acme"]` adds a name to it; `["off"]` reserves nothing.
	// Default (unset): the built-in list. Names already held are not
	// affected, and their holders may change their case.
	ReservedNames []string `json:"reserved_names,omitempty"`

	// Most guests that may exist at once; further creations are answered
	// 429 until guests upgrade or expire. Default: 100000. 0 means no cap.
	MaxLiveGuests *int64 `json:"max_live_guests,omitempty"`

	// Guests with no activity for this long are deleted, with their
	// sessions, unless kept. Orphaned guests (no device key and no session
	// left, so nobody can ever sign in as them) are deleted at the next
	// sweep. Default: 720h (30 days). 0 turns expiry off.
	GuestTTL *caddy.Duration `json:"guest_ttl,omitempty"`

	// How often the expiry sweep runs; it also deletes the signing keys
	// rotated out long enough ago that every token they signed has expired
	// (the rotation + 30s + the longest token lifetime + clock_skew).
	// Default: 10m.
	SweepInterval caddy.Duration `json:"sweep_interval,omitempty"`

	// Activity (token issuance, refresh, proxied requests) is recorded in
	// memory and written to the store this often, so last-activity times
	// are precise to this interval. Default: 1m.
	ActivityFlushInterval caddy.Duration `json:"activity_flush_interval,omitempty"`

	// Response header by which the upstream marks the requesting guest as
	// kept (value `true`): kept guests own data and never expire. The
	// header is removed before the response leaves Caddy, and so is
	// X-Guest-Auth-Keep when another name is set (it then marks nothing).
	// Default: X-Guest-Auth-Keep.
	KeepHeader string `json:"keep_header,omitempty"`

	// Optional webhook receiving the module's events (guest.created,
	// guest.upgraded, guest.expired, session.revoked,
	// refresh.reuse_detected, signin.throttled, user.deleted) as signed
	// JSON POSTs.
	//
	// Whether or not a webhook is set, each event is also emitted to
	// Caddy's events app, named guest_auth_ and the type with "_" for "."
	// (guest_auth_guest_created, guest_auth_guest_upgraded,
	// guest_auth_guest_expired, guest_auth_session_revoked,
	// guest_auth_refresh_reuse_detected, guest_auth_signin_throttled,
	// guest_auth_user_deleted, and guest_auth_user_kept, which is not sent
	// to the webhook), from module http.handlers.guest_auth, with the
	// event's data plus user_id and client_id. Handlers run synchronously
	// on the request's path.
	Webhook *Webhook `json:"webhook,omitempty"`

	// The module's own endpoints (token, challenge, revoke, update-user,
	// logout, ...) must receive the whole request body within this time of
	// the request's headers, or are answered 408 and the connection closed,
	// so slow clients (slowloris) cannot hold connections open. Proxied
	// requests are not affected. Default: 10s.
	APIReadTimeout caddy.Duration `json:"api_read_timeout,omitempty"`

	// How many verified access tokens to remember, so repeat requests skip
	// signature verification; when full, the least recently used is
	// dropped. Default: 100000, sized by memory: one cached token takes
	// about 530 bytes (its claims, keyed by the token's SHA-256, whatever
	// the algorithm), so the default holds at most ≈ 51 MiB, and 100 000
	// tokens in active use never thrash it. 0 disables the cache.
	TokenCacheSize *int `json:"token_cache_size,omitempty"`

	svc      *accounts.Service
	protocol *protocol.Handler // the module's own endpoints
	pages    *pages.Pages      // with Browser: the pages and the session cookie
	activity *accounts.Activity
	events   *events.Emitter
	outbox   *outbox.Outbox // with a webhook
	mailer   *mail.Mailer   // with email
	bg       *background
	poolKey  string
	shared   *sharedStore
	// throttleKeys are this config's entries in throttlePool
	throttleKeys []string
	// admission is the admission lock pooled with its buckets (admitLock)
	admission *sync.Mutex
	clients   map[string]*protocol.Client
	// clientConfigs are the Clients, their secrets resolved
	clientConfigs []protocol.ClientConfig
	routes        map[string]route  // see buildRoutes
	cors          *protocol.CORS    // the cors_origins; nil for none
	headers       *headers.Identity // the identity headers: stripped, then set
	logger        *zap.Logger
	alg           jwa.SignatureAlgorithm
	issuer        string // configured issuer, without trailing slash
	origin        string // scheme://host of the configured issuer
	now           func() time.Time
	config        <-chan struct{}       // identifies the Caddy config this handler belongs to
	helper        *httpcaddyfile.Helper // while parsing a Caddyfile: named matchers for browser create_guest

	// Caddy's events app and this module's context, to emit to it
	caddyEvents *caddyevents.App
	caddyCtx    caddy.Context
}

// Interface guards
var (
	_ caddy.Provisioner           = (*GuestAuth)(nil)
	_ caddy.Validator             = (*GuestAuth)(nil)
	_ caddy.CleanerUpper          = (*GuestAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*GuestAuth)(nil)
	_ caddyfile.Unmarshaler       = (*GuestAuth)(nil)
)

// Client is an application that may request tokens.
type Client struct {
	// The client_id.
	ClientID string `json:"client_id"`
	// The client_secret. Use a placeholder such as `{env.APP_SECRET}` so the
	// secret stays out of the config file.
	ClientSecret string `json:"client_secret,omitempty"`
	// Public marks a client that cannot keep a secret, such as a mobile app:
	// it has no client_secret and authenticates with its client_id alone.
	// Its guests must be bound to a device key, so of the guest requests
	// only the key-pair grant is open to it.
	Public bool `json:"public,omitempty"`
	// Guests says how this client may create guests: `code` (the Casdoor
	// `code=guest-user` request), `keypair` (the Authgear device key-pair
	// grant, which also signs a device's guest in again), `web` (the
	// Authgear web SDK's anonymous sign-up, POST
	// /api/anonymous_user/signup, which needs neither a key nor a secret,
	// only the client_id, under the guest creation limits), several of
	// these separated by spaces, `both` (code and keypair) or `none`.
	// Default: `both`, or `keypair` for a public client, which cannot use
	// `code`.
	Guests string `json:"guests,omitempty"`
	// RedirectURIs are where the authorization endpoint (/oauth/authorize)
	// may send a visitor back with a code: absolute URIs without a
	// fragment, compared as exact strings (RFC 9700), so list every one
	// the client uses. A client without any cannot use the authorization
	// code flow. Needs `browser` (the sign-in pages are its interface).
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	// PostLogoutRedirectURIs are where the end-session endpoint
	// (/oauth/logout) may send a visitor after signing them out, compared
	// as exact strings. Needs `browser`.
	PostLogoutRedirectURIs []string `json:"post_logout_redirect_uris,omitempty"`
	// ManageUsers lets this client, with its secret, call Casdoor's user
	// API: /api/get-user, /api/get-users, /api/update-user (of any user),
	// /api/add-user, /api/delete-user and /api/set-password. For a
	// server-side app the site owner trusts: it can rename users, set
	// their passwords and delete them. Not for a public client.
	ManageUsers bool `json:"manage_users,omitempty"`
}

// HeaderNames names the identity headers sent upstream. Every header of this
// set, and of the default set (with X-Auth-Assertion and X-Auth-Merged-From,
// and the configured assertion and merged-from names, whether or not this
// handler sets them), sent by the client is removed, in any spelling (any
// case, `_` or `.` for `-`).
type HeaderNames struct {
	// Default: X-Auth-User-Id (the user id, the token's `sub`).
	UserID string `json:"user_id,omitempty"`
	// Default: X-Auth-User-Name (the username).
	UserName string `json:"user_name,omitempty"`
	// Default: X-Auth-User-Tag (`guest-user` or `normal-user`).
	UserTag string `json:"user_tag,omitempty"`
	// Default: X-Auth-User-Anonymous (`true` or `false`).
	UserAnonymous string `json:"user_anonymous,omitempty"`
}

// MergedFromHeader is the default header telling the upstream which guest
// a session was merged from (Browser.MergedHeader); a client can never send
// it upstream.
const MergedFromHeader = headers.DefaultMergedFrom

// Access policies.
const (
	RequireNone = "none"
	RequireAny  = "any"
	RequireUser = "user"
)

// CaddyModule returns the Caddy module information.
func (GuestAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.guest_auth",
		New: func() caddy.Module { return new(GuestAuth) },
	}
}

// Provision sets defaults, resolves secrets and opens (or shares) the store.
func (g *GuestAuth) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	g.config = ctx.Done()
	sb, err := g.prepare(ctx)
	if err != nil {
		return err
	}
	g.poolKey = sb.StoreKey()
	if g.shared, err = openShared(ctx, g.poolKey, sb.OpenStore); err != nil {
		g.poolKey = ""
		return err
	}
	if g.shared.store.Shared() && g.issuer == "" {
		// Every instance sharing the store shares its signing keys: an
		// issuer taken from each request's Host would let a token minted
		// for one site be replayed at another under that site's Host.
		return fmt.Errorf("storage %s is shared by every instance using it: set issuer (the same URL on every node of one site)", g.poolKey)
	}
	if err := g.shared.checkIssuer(g); err != nil {
		return err
	}

	if err := g.setupEvents(ctx); err != nil {
		return err
	}
	var unconfirmed time.Duration
	if g.Browser != nil {
		if err := g.Browser.provision(ctx); err != nil {
			return err
		}
		unconfirmed = time.Duration(*g.Browser.UnconfirmedGuestTTL)
	}
	g.activity = accounts.NewActivity(g.shared.store)
	g.admission = g.admitLock()
	if g.mailer, err = g.setupMail(); err != nil {
		return err
	}
	var mailer accounts.Mailer
	var mailAddr, mailIP accounts.Limit
	if g.mailer != nil {
		mailer = g.mailer
		mailAddr, mailIP = g.Email.AddressLimit.limit(), g.Email.IPLimit.limit()
	}
	g.svc, err = accounts.New(ctx, g.shared.store, g.shared.keys, accounts.Config{
		LimitHits:       &g.shared.hits,
		Alg:             g.alg,
		AccessTTL:       time.Duration(g.AccessTokenLifetime),
		SessionIdle:     time.Duration(g.SessionIdleTimeout),
		SessionLifetime: time.Duration(g.SessionLifetime),
		Skew:            time.Duration(*g.ClockSkew),
		Audiences:       slices.Collect(maps.Keys(g.clients)),
		CacheSize:       *g.TokenCacheSize,
		AccountLimit:    g.Limits.SignInAccount.limit(),
		IPLimit:         g.Limits.SignInIP.limit(),

		DeviceLimit:        g.Limits.SignInDevice.limit(),
		AccountHashLimit:   g.Limits.SignInHashes.limit(),
		MaxSessionsPerUser: *g.MaxSessionsPerUser,

		Guests: accounts.GuestLimits{
			PerIP:   g.Limits.GuestIP.limit(),
			Global:  g.Limits.GuestGlobal.limit(),
			MaxLive: *g.MaxLiveGuests,
		},
		Challenges: accounts.ChallengeLimits{
			PerIP:  g.Limits.ChallengeIP.limit(),
			Global: g.Limits.ChallengeGlobal.limit(),
		},
		Activity:      g.activity,
		NameUserLimit: g.Limits.NameChangeUser.limit(),
		NameIPLimit:   g.Limits.NameChangeIP.limit(),
		ReservedNames: accounts.ExpandReservedNames(g.ReservedNames),
		Observer:      g.observe,
		Stager:        g.stager(),
		Throttles:     g.throttle,
		AdmitLock:     g.admission,
		SharedLimits:  g.sharedLimit,
		Organization:  g.Organization,

		Mailer:           mailer,
		MailAddressLimit: mailAddr,
		MailIPLimit:      mailIP,

		BrowserUnconfirmed: unconfirmed,
	}, g.now)
	if err != nil {
		return err
	}

	g.prepareHeaders()
	if a := g.Assertion; a != nil {
		a.signer = &headers.Assertion{Header: a.Header, Lifetime: time.Duration(a.Lifetime), Keys: g.shared.keys, Alg: g.alg, Now: g.now}
	}
	g.protocol = &protocol.Handler{
		Accounts: g.svc, Clients: g.clients, Issuer: g.issuerFor, Origin: g.originFor, FixedIssuer: g.issuer != "",
		Alg: g.alg, KeySet: g.shared.keys.JWKS, ClientIP: clientIP, LimitKey: g.limitKey, Logger: g.logger,
	}
	if g.Browser != nil {
		g.pages = &pages.Pages{
			Accounts: g.svc, Prefix: g.Browser.PagesPrefix, CookieName: g.Browser.CookieName, Templates: g.Browser.templates,
			CookieSecure: g.Browser.CookieSecure, SecureIssuer: strings.HasPrefix(g.origin, "https://"),
			SiteName: g.Browser.SiteName, Home: g.Browser.Home,
			Issuer: g.issuerFor, ClientIP: clientIP, LimitKey: g.limitKey, ReadTimeout: time.Duration(g.APIReadTimeout),
			Logger: g.logger, Now: g.now, FormActions: protocol.RedirectSources(g.clients),
			Providers: g.Browser.providers,
		}
		for _, name := range g.Browser.Admins {
			g.pages.Admins = append(g.pages.Admins, model.NameKey(name))
		}
		if len(g.pages.Admins) > 0 {
			g.pages.AdminStore, g.pages.GuestTTL = g.shared.store, time.Duration(*g.GuestTTL)
		}
		if pk := g.Browser.Passkeys; pk != nil {
			if g.pages.Passkeys, err = accounts.NewPasskeys(g.svc, g.shared.store, accounts.PasskeyConfig{RPID: pk.RPID, RPName: g.Browser.SiteName}); err != nil {
				return err
			}
		}
		// The authorization and end-session endpoints sign visitors in and
		// out with the pages.
		g.protocol.Browser = g.pages
		if g.mailer != nil {
			g.protocol.LinkBase = g.pages.LinkBase
		}
	}
	g.buildRoutes()
	if g.mailer != nil {
		g.mailer.Start()
	}
	g.startBackground(ctx)
	g.shared.attach(g)
	return nil
}

// prepare is the part of Provision that needs no store: it sets the
// defaults, resolves the client secrets, the signing algorithm and the
// issuer, and loads the storage module (which opens nothing). Tests run
// it, then Validate, to check a config without opening anything.
func (g *GuestAuth) prepare(ctx caddy.Context) (storage.Module, error) {
	if g.now == nil {
		g.now = time.Now
	}
	if err := g.Limits.adoptFlat(&g.flatLimits); err != nil {
		return nil, err
	}
	g.setDefaults()

	repl := caddy.NewReplacer()
	g.clientConfigs = make([]protocol.ClientConfig, len(g.Clients))
	for i, c := range g.Clients {
		g.clientConfigs[i] = protocol.ClientConfig{
			ID: c.ClientID, SecretGiven: c.ClientSecret != "", Secret: []byte(repl.ReplaceKnown(c.ClientSecret, "")), Public: c.Public,
			Guests: c.Guests, RedirectURIs: c.RedirectURIs, PostLogoutRedirectURIs: c.PostLogoutRedirectURIs, ManageUsers: c.ManageUsers,
		}
	}
	g.clients = protocol.NewClients(g.clientConfigs)
	orDefault(&g.Organization, accounts.DefaultOrganization)
	cors, err := protocol.NewCORS(g.CORSOrigins)
	if err != nil {
		return nil, err
	}
	g.cors = cors

	alg, err := tokens.ParseAlgorithm(g.SigningAlg)
	if err != nil {
		return nil, err
	}
	g.alg = alg

	if g.Issuer != "" {
		if g.issuer, g.origin, err = protocol.ParseIssuer(g.Issuer); err != nil {
			return nil, err
		}
	}

	return g.Storage.load(ctx)
}

// prepareHeaders makes the identity headers: the configured names, set
// for the upstream; stripped from clients, with them every default name,
// the assertion and merged-from headers included whether or not this
// config sets them (headers.NewIdentity), so nothing behind Caddy can be
// fooled by a forged X-Auth-User-Id when others are configured, nor by a
// captured assertion sent through a handler that signs none.
func (g *GuestAuth) prepareHeaders() {
	g.headers = headers.NewIdentity(g.headerNames())
}

// headerNames are the configured identity headers' names ("": the
// default, which headers.Names fills in).
func (g *GuestAuth) headerNames() headers.Names {
	h := g.Headers
	n := headers.Names{UserID: h.UserID, UserName: h.UserName, UserTag: h.UserTag, UserAnonymous: h.UserAnonymous}
	if g.Browser != nil {
		n.MergedFrom = g.Browser.MergedHeader
	}
	if g.Assertion != nil {
		n.Assertion = g.Assertion.Header
	}
	return n
}

func (g *GuestAuth) setDefaults() {
	orDefault(&g.SigningAlg, string(jwa.RS256))
	orDefault(&g.AccessTokenLifetime, caddy.Duration(time.Hour))
	orDefault(&g.SessionIdleTimeout, caddy.Duration(30*24*time.Hour))
	orDefault(&g.SessionLifetime, caddy.Duration(90*24*time.Hour))
	newDefault(&g.ClockSkew, caddy.Duration(30*time.Second))
	orDefault(&g.Require, RequireNone)
	g.Limits.setDefaults()
	newDefault(&g.MaxSessionsPerUser, 10)
	orDefault(&g.IPPrefixV4, 32)
	orDefault(&g.IPPrefixV6, 64)
	newDefault(&g.MaxLiveGuests, 100_000)
	newDefault(&g.GuestTTL, caddy.Duration(30*24*time.Hour))
	orDefault(&g.SweepInterval, caddy.Duration(10*time.Minute))
	orDefault(&g.APIReadTimeout, caddy.Duration(10*time.Second))
	orDefault(&g.ActivityFlushInterval, caddy.Duration(time.Minute))
	orDefault(&g.KeepHeader, headers.DefaultKeep)
	g.KeepHeader = http.CanonicalHeaderKey(g.KeepHeader)
	newDefault(&g.TokenCacheSize, tokens.DefaultCacheSize)
	if g.Browser != nil {
		g.Browser.setDefaults()
	}
	if g.Assertion != nil {
		g.Assertion.setDefaults()
	}
	if g.Email != nil {
		g.Email.setDefaults()
	}
}

// orDefault sets *v to d when it is unset (the zero value).
func orDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// newDefault sets *p to d when it is unset (nil): for the options whose
// explicit zero differs from unset.
func newDefault[T any](p **T, d T) {
	if *p == nil {
		*p = &d
	}
}

// Validate checks the provisioned config.
func (g *GuestAuth) Validate() error {
	switch g.Require {
	case RequireNone, RequireAny, RequireUser:
	default:
		return fmt.Errorf("require must be none, any or user, not %q", g.Require)
	}
	if err := protocol.CheckClients(g.clientConfigs, g.Browser != nil); err != nil {
		return err
	}
	if o := g.Organization; strings.ContainsAny(o, "/ ") || len(o) > 100 || strings.IndexFunc(o, unicode.IsControl) >= 0 {
		return fmt.Errorf("organization %q must be at most 100 characters, without / or spaces", o)
	}
	if g.AccessTokenLifetime < caddy.Duration(time.Minute) || g.AccessTokenLifetime > caddy.Duration(24*time.Hour) {
		return errors.New("access_token_lifetime must be between 1m and 24h")
	}
	if g.SessionIdleTimeout < g.AccessTokenLifetime || g.SessionLifetime < g.AccessTokenLifetime {
		return errors.New("session_idle_timeout and session_lifetime must be at least access_token_lifetime")
	}
	if *g.ClockSkew < 0 || *g.ClockSkew > caddy.Duration(5*time.Minute) {
		return errors.New("clock_skew must be between 0 and 5m")
	}
	if err := g.Limits.validate(); err != nil {
		return err
	}
	if *g.MaxLiveGuests < 0 || *g.GuestTTL < 0 || g.SweepInterval <= 0 || g.ActivityFlushInterval <= 0 {
		return errors.New("max_live_guests and guest_ttl cannot be negative; sweep_interval and activity_flush_interval must be positive")
	}
	for _, n := range g.ReservedNames {
		if model.NameKey(n) == "" || (n == accounts.ReservedOff && len(g.ReservedNames) > 1) {
			return errors.New("reserved_names: names must be non-empty, and off must stand alone")
		}
	}
	if g.IPPrefixV4 < 1 || g.IPPrefixV4 > 32 || g.IPPrefixV6 < 1 || g.IPPrefixV6 > 128 {
		return errors.New("ip_prefix_v4 must be between 1 and 32, ip_prefix_v6 between 1 and 128")
	}
	if g.APIReadTimeout < 0 {
		return errors.New("api_read_timeout cannot be negative")
	}
	if *g.TokenCacheSize < 0 {
		return errors.New("token_cache_size cannot be negative")
	}
	if *g.MaxSessionsPerUser < 0 {
		return errors.New("max_sessions_per_user cannot be negative")
	}
	if g.Email != nil {
		if err := g.Email.validate(); err != nil {
			return err
		}
		if g.Browser == nil {
			return errors.New("email needs browser: its links open the built-in pages")
		}
	}
	if g.Browser != nil {
		if g.Cookie != "" {
			return errors.New("cookie (an access token in a cookie) and browser (session cookies) cannot both be set")
		}
		if err := g.Browser.validate(); err != nil {
			return err
		}
		if p := g.Browser.Passkeys; p != nil {
			if err := p.validate(g.issuer); err != nil {
				return err
			}
		}
	}
	if g.Assertion != nil {
		if err := g.Assertion.validate(); err != nil {
			return err
		}
	}
	if err := g.headerNames().CheckUserNames(); err != nil {
		return err
	}
	return nil
}

// Cleanup releases this config's use of the shared store; the file closes
// when no config uses it any more.
func (g *GuestAuth) Cleanup() error {
	if g.mailer != nil {
		g.mailer.Stop() // a mail being sent is sent again after its lease
	}
	g.stopBackground()
	g.stopEvents()
	g.releaseThrottles()
	if g.poolKey == "" {
		return nil
	}
	g.shared.detach(g)
	_, err := storePool.Delete(g.poolKey)
	return err
}

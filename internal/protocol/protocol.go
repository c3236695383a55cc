// Package protocol is guestauth's wire protocols over the accounts
// Service: the OAuth 2.0 token endpoint (every grant) and revocation,
// Casdoor's account API (/api/update-user, /api/get-account, /api/logout),
// Authgear's challenge and anonymous-request grant, OpenID Connect
// discovery, JWKS and UserInfo; client authentication, request parsing, and
// the one classification of outcomes with a writer per protocol
// (outcomes.go). The Caddy module routes requests to a Handler it builds in
// Provision; nothing here knows the store behind the Service.
package protocol

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/ctcmp"
)

// Paths of the endpoints. Discovery and JWKS are served under the issuer's
// path; the others at the site root, where the SDKs look for them.
//
//nolint:gosec // G101: URL paths, not credentials
const (
	PathToken         = "/oauth/token"                  // Hanzo IAM
	PathTokenCasdoor  = "/api/login/oauth/access_token" // Casdoor
	PathRevoke        = "/oauth/revoke"
	PathChallenge     = "/oauth2/challenge" // Authgear
	PathUpdateUser    = "/api/update-user"
	PathGetAccount    = "/api/get-account"
	PathLogout        = "/api/logout"
	PathUserInfo      = "/api/userinfo"
	PathUserInfoOAuth = "/oauth/userinfo"
	PathDiscovery     = "/.well-known/openid-configuration"
	PathJWKS          = "/.well-known/jwks.json"
	PathJWKSCasdoor   = "/.well-known/jwks" // Casdoor's jwks_uri: the same set

	// The authorization endpoint, also at Casdoor's and Authgear's paths
	// (Authgear's SDK takes its API origin from authorization_endpoint).
	PathAuthorize         = "/oauth/authorize"
	PathAuthorizeCasdoor  = "/login/oauth/authorize"
	PathAuthorizeAuthgear = "/oauth2/authorize"
	PathEndSession        = "/oauth/logout" // RP-Initiated Logout 1.0
	PathIntrospect        = "/oauth/introspect"
	PathIntrospectCasdoor = "/api/login/oauth/introspect"
)

// Handler serves the endpoints. Its fields are set once, in the module's
// Provision, and only read afterwards.
type Handler struct {
	Accounts *accounts.Service
	// Clients by client_id.
	Clients map[string]*Client
	// Issuer is the issuer of the tokens minted or checked on r; Origin
	// the scheme://host the endpoints are served under.
	Issuer, Origin func(r *http.Request) string
	// FixedIssuer is set when the issuer is configured rather than taken
	// from each request: the discovery document may then be cached.
	FixedIssuer bool
	// Alg is the signing algorithm, as discovery announces it; KeySet the
	// current key set (JWKS) document.
	Alg    jwa.SignatureAlgorithm
	KeySet func() []byte
	// ClientIP is the client's address as events report it; LimitKey the
	// key of every per-IP limit for r.
	ClientIP, LimitKey func(r *http.Request) string
	Logger             *zap.Logger
	// Browser is the browser side the authorization and end-session
	// endpoints sign visitors in and out with (internal/pages); nil
	// without browser sessions, when those endpoints answer 404.
	Browser Browser
	// LinkBase is where mailed links point for r (the issuer's origin and
	// the pages' prefix); nil without email.
	LinkBase func(r *http.Request) string
}

// Client is a configured client as the endpoints see it.
type Client struct {
	ID     string
	Public bool
	// Guests is the effective guest policy (see GuestPolicy).
	Guests string
	// RedirectURIs are where the authorization endpoint may send the
	// visitor back with a code; PostLogoutRedirectURIs where the
	// end-session endpoint may send them after signing out. Compared as
	// exact strings (RFC 9700 §2.1).
	RedirectURIs, PostLogoutRedirectURIs []string
	// ManageUsers lets the client use Casdoor's user API with its
	// credentials (casdoor_users.go).
	ManageUsers bool
	secret      ctcmp.Digest // what presented secrets are compared with
}

// redirectURI is the redirect URI of an authorization request for c: the
// one given, if registered, or with none given the client's only one.
func (c *Client) redirectURI(given string, present bool) (string, bool) {
	if !present {
		if len(c.RedirectURIs) == 1 {
			return c.RedirectURIs[0], true
		}
		return "", false
	}
	return given, slices.Contains(c.RedirectURIs, given)
}

// RedirectSources are the CSP sources of every redirect and post-logout
// redirect URI of clients, sorted and without repeats: scheme://host[:port]
// for http and https, scheme: for an app's own scheme. A URI whose host a
// CSP source cannot spell is left out.
func RedirectSources(clients map[string]*Client) []string {
	seen := map[string]bool{}
	for _, c := range clients {
		for _, list := range [][]string{c.RedirectURIs, c.PostLogoutRedirectURIs} {
			for _, raw := range list {
				u, err := url.Parse(raw)
				if err != nil || !cspScheme.MatchString(u.Scheme) {
					continue
				}
				switch src := strings.ToLower(u.Scheme) + ":"; src {
				case "http:", "https:":
					if cspHost.MatchString(u.Host) {
						seen[src+"//"+strings.ToLower(u.Host)] = true
					}
				default:
					seen[src] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for src := range seen {
		out = append(out, src)
	}
	slices.Sort(out)
	return out
}

// The characters a CSP scheme-source and host-source may have.
var (
	cspScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)
	cspHost   = regexp.MustCompile(`^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]+)?$`)
)

// NewClient makes the Client of a configured one: secret is its resolved
// client_secret, guests its configured policy ("" for the default).
func NewClient(id string, secret []byte, public bool, guests string) *Client {
	return &Client{ID: id, Public: public, Guests: GuestPolicy(guests, public), secret: ctcmp.Sum(secret)}
}

// A Refusal answers a method an endpoint does not take: 405 with allow as
// the Allow header, in the endpoint's protocol.
type Refusal func(w http.ResponseWriter, allow string) error

// The refusals of each endpoint.
var (
	RefuseToken    = oauthRefusal("The token endpoint accepts POST only.")
	RefuseRevoke   = oauthRefusal("The revocation endpoint accepts POST only.")
	RefuseGet      = oauthRefusal("Use GET.") // discovery, JWKS, get-account
	RefuseEnvelope = refusal(func(w http.ResponseWriter) error {
		_ = WriteJSON(w, http.StatusMethodNotAllowed, envelope{Status: "error", Msg: "Use POST."}) // the 405 is the answer; a write error is the client gone
		return nil
	})
	RefuseChallenge = refusal(func(w http.ResponseWriter) error {
		return writeAuthgearError(w, http.StatusMethodNotAllowed, "BadRequest", "MethodNotAllowed", "Use POST.")
	})
	RefuseUserInfo = refusal(func(w http.ResponseWriter) error {
		return BearerError(w, http.StatusMethodNotAllowed, accounts.CodeInvalidRequest, "Use GET or POST.")
	})
	RefuseIntrospect = oauthRefusal("The introspection endpoint accepts POST only.")
	// RefuseProviderStart answers PathProviderStart (RFC 6750's form).
	RefuseProviderStart = refusal(func(w http.ResponseWriter) error {
		return BearerError(w, http.StatusMethodNotAllowed, accounts.CodeInvalidRequest, "Use POST.")
	})
	// RefuseBrowser answers the browser endpoints (authorization, end
	// session), which a person's browser reaches: plain text.
	RefuseBrowser = refusal(func(w http.ResponseWriter) error {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, err := w.Write([]byte("Use GET or POST.\n"))
		return err
	})
)

func refusal(write func(http.ResponseWriter) error) Refusal {
	return func(w http.ResponseWriter, allow string) error {
		w.Header().Set("Allow", allow)
		return write(w)
	}
}

func oauthRefusal(desc string) Refusal {
	return refusal(func(w http.ResponseWriter) error {
		return WriteJSON(w, http.StatusMethodNotAllowed, oauthError{Error: accounts.CodeInvalidRequest, Description: desc})
	})
}

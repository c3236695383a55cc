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
}

// Client is a configured client as the endpoints see it.
type Client struct {
	ID     string
	Public bool
	// Guests is the effective guest policy (see GuestPolicy).
	Guests string
	// ManageUsers lets the client use Casdoor's user API with its
	// credentials (casdoor_users.go).
	ManageUsers bool
	secret      ctcmp.Digest // what presented secrets are compared with
}

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

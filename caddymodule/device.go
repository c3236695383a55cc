package caddymodule

// The HTTP side of device key-pair guests (Authgear-compatible): the
// challenge endpoint and the anonymous-request grant. The logic is in
// accounts/device.go.

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// PathChallenge is Authgear's challenge endpoint. It sits at the site root,
// where the Authgear SDKs look for it, whatever the issuer's path.
const PathChallenge = "/oauth2/challenge"

// Guest policies of a client (Client.Guests).
const (
	GuestsCode    = "code"
	GuestsKeyPair = "keypair"
	GuestsBoth    = "both"
	GuestsNone    = "none"
)

// guests is the client's effective policy.
func (c *Client) guests() string {
	switch {
	case c.Guests != "":
		return c.Guests
	case c.Public:
		return GuestsKeyPair
	}
	return GuestsBoth
}

// allowGuests refuses, as unauthorized_client, a way of creating guests the
// client's policy does not include.
func (c *Client) allowGuests(way string) error {
	if p := c.guests(); p == GuestsBoth || p == way {
		return nil
	}
	what := map[string]string{
		GuestsCode:    "create guests with code=guest-user",
		GuestsKeyPair: "use the device key-pair grant",
	}[way]
	return &accounts.Error{Code: accounts.CodeUnauthorizedClient, Description: fmt.Sprintf("This client may not %s.", what)}
}

// validateGuests checks the guest policy and the public flag.
func (c *Client) validateGuests() error {
	switch c.Guests {
	case "", GuestsCode, GuestsKeyPair, GuestsBoth, GuestsNone:
	default:
		return fmt.Errorf("client %q: guests must be code, keypair, both or none, not %q", c.ClientID, c.Guests)
	}
	if !c.Public {
		return nil
	}
	if c.ClientSecret != "" {
		return fmt.Errorf("client %q is public and cannot have a secret", c.ClientID)
	}
	if p := c.guests(); p == GuestsCode || p == GuestsBoth {
		return fmt.Errorf("client %q is public, so its guests must be bound to a device key: use guests keypair or none", c.ClientID)
	}
	return nil
}

// tokenAuthMethods lists the client authentication methods in use.
func (g *GuestAuth) tokenAuthMethods() []string {
	methods := []string{"client_secret_basic", "client_secret_post"}
	for _, c := range g.Clients {
		if c.Public {
			return append(methods, "none")
		}
	}
	return methods
}

// anonymousRequestGrant is the token endpoint's key-pair grant. The client
// is already authenticated (a public client by its client_id alone).
func (g *GuestAuth) anonymousRequestGrant(r *http.Request, client *Client, params map[string]string) (*accounts.Issued, error) {
	if err := client.allowGuests(GuestsKeyPair); err != nil {
		return nil, err
	}
	jwt := params["jwt"]
	if jwt == "" {
		return nil, badRequest("The jwt parameter is missing.")
	}
	res, err := g.svc.AnonymousRequest(r.Context(), g.issuerFor(r), client.ClientID, g.limitKey(r), jwt)
	if err != nil {
		if errors.Is(err, accounts.ErrNotAGuest) {
			g.logger.Info("device.refused_not_guest", zap.String("client_id", client.ClientID))
		}
		return nil, err
	}
	if !res.Created {
		g.logger.Info("device.signin", zap.String("user_id", res.User.ID), zap.String("client_id", client.ClientID), zap.String("device_kid", res.User.DeviceKID))
	}
	return res.Issued, nil
}

// Authgear's API envelope: {"result": ...} or {"error": {...}}; its SDKs
// read the challenge from "result".
type authgearEnvelope struct {
	Result any            `json:"result,omitempty"`
	Error  *authgearError `json:"error,omitempty"`
}

type authgearError struct {
	Name    string `json:"name"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Code    int    `json:"code"`
}

type authgearChallenge struct {
	Token    string    `json:"token"`
	ExpireAt time.Time `json:"expire_at"`
}

// serveChallenge issues a challenge: POST {"purpose":"anonymous_request"}.
func (g *GuestAuth) serveChallenge(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return writeAuthgearError(w, http.StatusMethodNotAllowed, "BadRequest", "MethodNotAllowed", "Use POST.")
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return writeAuthgearError(w, http.StatusBadRequest, "BadRequest", "InvalidContentType", "The Content-Type must be application/json.")
	}
	body, err := readBody(w, r, 4<<10)
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) { // unreadable: answered as too large, as ever
			err = &httpError{status: http.StatusRequestEntityTooLarge, err: &accounts.Error{Code: accounts.CodeInvalidRequest, Description: err.Error()}}
		}
		return g.writeChallengeError(w, err)
	}
	// As Authgear's schema (additionalProperties false): purpose only, a
	// string, named once.
	badBody := func() error {
		return writeAuthgearError(w, http.StatusBadRequest, "Invalid", "ValidationFailed", "The body must be a JSON object with only a string purpose.")
	}
	var purpose *string
	unknown := false
	err = walkFlatJSON(body, func(k string, v *string) {
		if k == "purpose" {
			purpose = v
		} else {
			unknown = true
		}
	})
	if err != nil || unknown {
		return badBody()
	}
	if purpose == nil {
		return writeAuthgearError(w, http.StatusBadRequest, "Invalid", "ValidationFailed", "The purpose is required.")
	}
	c, err := g.svc.NewChallenge(r.Context(), *purpose, g.limitKey(r))
	if err != nil {
		return g.writeChallengeError(w, err)
	}
	return writeJSON(w, http.StatusOK, authgearEnvelope{Result: authgearChallenge{Token: c.Token, ExpireAt: c.ExpiresAt}})
}

package protocol

// The HTTP side of device key-pair guests (Authgear-compatible): the
// challenge endpoint and the anonymous-request grant. The logic is in
// accounts/device.go. Also each client's guest policy, which says which of
// the guest grants it may use.

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

// Guest policies of a client (its `guests` option): one of these words,
// or several of code, keypair and web separated by spaces.
const (
	GuestsCode    = "code"    // Casdoor's code=guest-user request
	GuestsKeyPair = "keypair" // Authgear's device key-pair grant
	GuestsWeb     = "web"     // Authgear's web anonymous sign-up (no key, no secret)
	GuestsBoth    = "both"    // code and keypair
	GuestsNone    = "none"
)

// GuestPolicy is the effective policy of a client configured with guests
// ("" when unset) and public: the ways it may create guests, separated by
// spaces ("" for none).
func GuestPolicy(guests string, public bool) string {
	switch {
	case guests == "" && public:
		return GuestsKeyPair
	case guests == "", guests == GuestsBoth:
		return GuestsCode + " " + GuestsKeyPair
	case guests == GuestsNone:
		return ""
	}
	return strings.Join(strings.Fields(guests), " ")
}

// allowGuests refuses, as unauthorized_client, a way of creating guests the
// client's policy does not include.
func (c *Client) allowGuests(way string) error {
	if slices.Contains(strings.Fields(c.Guests), way) {
		return nil
	}
	what := map[string]string{
		GuestsCode:    "create guests with code=guest-user",
		GuestsKeyPair: "use the device key-pair grant",
		GuestsWeb:     "sign up anonymous web users",
	}[way]
	return &accounts.Error{Code: accounts.CodeUnauthorizedClient, Description: fmt.Sprintf("This client may not %s.", what)}
}

// ValidateClient checks a client's guest policy and public flag (a
// public client has no secret, and its code guests would need none: its
// guests must be bound to a device key, or be web guests, which are under
// the same limits as browser guests).
func ValidateClient(id string, hasSecret, public bool, guests string) error {
	words := strings.Fields(guests)
	for _, w := range words {
		switch w {
		case GuestsCode, GuestsKeyPair, GuestsWeb:
		case GuestsBoth, GuestsNone:
			if len(words) > 1 {
				return fmt.Errorf("client %q: guests %s stands alone", id, w)
			}
		default:
			return fmt.Errorf("client %q: guests must be code, keypair, web (or several of them), both or none, not %q", id, guests)
		}
	}
	if !public {
		return nil
	}
	if hasSecret {
		return fmt.Errorf("client %q is public and cannot have a secret", id)
	}
	if slices.Contains(strings.Fields(GuestPolicy(guests, public)), GuestsCode) {
		return fmt.Errorf("client %q is public, so it cannot create guests with code=guest-user (which needs a secret): use guests keypair, web or none", id)
	}
	return nil
}

// tokenAuthMethods lists the client authentication methods in use.
func (h *Handler) tokenAuthMethods() []string {
	methods := []string{"client_secret_basic", "client_secret_post"}
	for _, c := range h.Clients {
		if c.Public {
			return append(methods, "none")
		}
	}
	return methods
}

// anonymousRequestGrant is the token endpoint's key-pair grant. The client
// is already authenticated (a public client by its client_id alone).
func (h *Handler) anonymousRequestGrant(r *http.Request, client *Client, params map[string]string) (*accounts.Issued, error) {
	if err := client.allowGuests(GuestsKeyPair); err != nil {
		return nil, err
	}
	jwt := params["jwt"]
	if jwt == "" {
		return nil, badRequest("The jwt parameter is missing.")
	}
	res, err := h.Accounts.AnonymousRequest(r.Context(), h.Issuer(r), client.ID, h.LimitKey(r), jwt)
	if err != nil {
		if errors.Is(err, accounts.ErrNotAGuest) {
			h.Logger.Info("device.refused_not_guest", zap.String("client_id", client.ID))
		}
		return nil, err
	}
	if !res.Created {
		h.Logger.Info("device.signin", zap.String("user_id", res.User.ID), zap.String("client_id", client.ID), zap.String("device_kid", res.User.DeviceKID))
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

// Challenge issues a challenge: POST {"purpose":"anonymous_request"}.
func (h *Handler) Challenge(w http.ResponseWriter, r *http.Request) error {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		return writeAuthgearError(w, http.StatusBadRequest, "BadRequest", "InvalidContentType", "The Content-Type must be application/json.")
	}
	body, err := readBody(w, r, 4<<10)
	if err != nil {
		var he *httpError
		if !errors.As(err, &he) { // unreadable: answered as too large, as ever
			err = &httpError{status: http.StatusRequestEntityTooLarge, err: &accounts.Error{Code: accounts.CodeInvalidRequest, Description: err.Error()}}
		}
		return h.writeChallengeError(w, err)
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
	c, err := h.Accounts.NewChallenge(r.Context(), *purpose, h.LimitKey(r))
	if err != nil {
		return h.writeChallengeError(w, err)
	}
	return WriteJSON(w, http.StatusOK, authgearEnvelope{Result: authgearChallenge{Token: c.Token, ExpireAt: c.ExpiresAt}})
}

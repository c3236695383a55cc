// Package oidcrp is guestauth's relying-party leg of "sign in with another
// provider": an OpenID Connect provider found by discovery, an
// authorization request with PKCE (S256), a nonce and a state, and a
// callback that checks the response's issuer (RFC 9207), redeems the code
// and verifies the ID token against the provider's JWKS (go-oidc). It
// stores nothing: the caller keeps each request's Pending in a flow state
// whose handle is the state, so any node can finish it.
package oidcrp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Config is one configured provider.
type Config struct {
	// Name is the provider's name in the configuration and its callback
	// path.
	Name         string
	Issuer       string
	ClientID     string
	ClientSecret string
	// Scopes requested; "openid" is added when missing.
	Scopes []string
}

// DefaultScopes are requested when a provider lists none.
var DefaultScopes = []string{oidc.ScopeOpenID, "email", "profile"}

// Provider is one provider, discovered on first use (a provider that is
// down at start-up delays nobody's start, and is tried again on the next
// sign-in).
type Provider struct {
	cfg    Config
	client *http.Client

	mu       sync.Mutex
	disc     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	issParam bool // the provider says it sends iss (RFC 9207)
}

// New checks cfg and returns its Provider; client makes its requests
// (nil: a client with a 10 s timeout).
func New(cfg Config, client *http.Client) (*Provider, error) {
	u, err := url.Parse(cfg.Issuer)
	switch {
	case cfg.Name == "":
		return nil, errors.New("a provider needs a name")
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("provider %s: issuer %q is not an http(s) URL without query or fragment", cfg.Name, cfg.Issuer)
	case cfg.ClientID == "":
		return nil, fmt.Errorf("provider %s: client_id is required", cfg.Name)
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultScopes
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Provider{cfg: cfg, client: client}, nil
}

// Name is the provider's configured name.
func (p *Provider) Name() string { return p.cfg.Name }

// Issuer is the provider's issuer URL, as configured (and discovered).
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// discover fetches the provider's metadata once it succeeds.
func (p *Provider) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.disc != nil {
		return p.disc, p.verifier, p.issParam, nil
	}
	disc, err := oidc.NewProvider(oidc.ClientContext(ctx, p.client), p.cfg.Issuer)
	if err != nil {
		return nil, nil, false, &Error{Reason: ReasonUnavailable, Err: fmt.Errorf("discovery of %s: %w", p.cfg.Issuer, err)}
	}
	var meta struct {
		IssParam bool `json:"authorization_response_iss_parameter_supported"`
	}
	if err := disc.Claims(&meta); err != nil {
		return nil, nil, false, &Error{Reason: ReasonUnavailable, Err: err}
	}
	// The algorithms are those the provider advertises that go-oidc
	// supports (asymmetric only: never "none", never a MAC keyed with the
	// client secret).
	p.disc, p.issParam = disc, meta.IssParam
	p.verifier = disc.Verifier(&oidc.Config{ClientID: p.cfg.ClientID})
	return p.disc, p.verifier, p.issParam, nil
}

// Pending is what a sign-in started keeps until its callback: stored by
// the caller in a flow state named by the state parameter.
type Pending struct {
	Provider string `json:"provider"`
	// Verifier is the PKCE code verifier; Nonce goes in the ID token.
	Verifier string `json:"verifier"`
	Nonce    string `json:"nonce"`
	// Binding is the SHA-256 (base64url) of a random value kept in a
	// cookie of the browser that started: only it can finish.
	Binding string `json:"binding"`
	// RedirectURL is the callback's absolute URL (registered at the
	// provider), sent with the request and again with the code.
	RedirectURL string `json:"redirect_url"`
	// Intent ("signin" or "link") and Return (a local path) are the
	// caller's.
	Intent string `json:"intent,omitempty"`
	Return string `json:"return,omitempty"`
}

// NewPending makes the secrets of one authorization request returning to
// redirectURL, and the browser binding, whose value goes in the browser's
// cookie.
func (p *Provider) NewPending(redirectURL string) (pend Pending, binding string, err error) {
	if redirectURL == "" {
		return Pending{}, "", errors.New("no redirect URL")
	}
	binding, err = random()
	if err != nil {
		return Pending{}, "", err
	}
	nonce, err := random()
	if err != nil {
		return Pending{}, "", err
	}
	return Pending{Provider: p.cfg.Name, Verifier: oauth2.GenerateVerifier(), Nonce: nonce, Binding: BindingHash(binding), RedirectURL: redirectURL}, binding, nil
}

// BindingHash is what Pending keeps of a binding cookie's value.
func BindingHash(binding string) string {
	h := sha256.Sum256([]byte(binding))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func random() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (p *Provider) oauth(disc *oidc.Provider, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret,
		Endpoint: disc.Endpoint(), RedirectURL: redirectURL, Scopes: p.cfg.Scopes,
	}
}

// AuthURL is the provider's authorization URL for the request whose
// Pending the caller stored under state.
func (p *Provider) AuthURL(ctx context.Context, state string, pend Pending) (string, error) {
	disc, _, _, err := p.discover(ctx)
	if err != nil {
		return "", err
	}
	return p.oauth(disc, pend.RedirectURL).AuthCodeURL(state, oauth2.S256ChallengeOption(pend.Verifier), oidc.Nonce(pend.Nonce)), nil
}

// Reasons a callback is refused.
const (
	ReasonUnavailable = "provider_unavailable" // discovery, the token endpoint or the JWKS failed
	ReasonDenied      = "provider_error"       // the provider answered with an error
	ReasonBinding     = "not_this_browser"     // the binding cookie is missing or another's
	ReasonIssuer      = "wrong_issuer"         // iss is missing or another provider's (RFC 9207)
	ReasonCode        = "bad_code"             // no code, or the provider refused it
	ReasonIDToken     = "bad_id_token"         // no ID token, or it does not verify
	ReasonNonce       = "bad_nonce"            // the ID token's nonce is not this request's
)

// Error is a refused callback.
type Error struct {
	Reason string
	// ProviderError and Description are the provider's own, for
	// ReasonDenied.
	ProviderError, Description string
	Err                        error
}

func (e *Error) Error() string {
	msg := "sign-in with provider refused: " + e.Reason
	if e.ProviderError != "" {
		msg += " (" + e.ProviderError + ")"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Identity is what a verified ID token says.
type Identity struct {
	Issuer, Subject   string
	PreferredUsername string
	Email             string
	EmailVerified     bool
	Name              string
}

// Finish checks the callback's query against pend (the request's, taken
// from its flow state) and binding (the browser's cookie value), redeems
// the code with the PKCE verifier and verifies the ID token: signature by
// the provider's JWKS, issuer, audience, expiry, and nonce.
func (p *Provider) Finish(ctx context.Context, q url.Values, pend Pending, binding string) (*Identity, error) {
	if pend.Provider != p.cfg.Name {
		return nil, &Error{Reason: ReasonIssuer, Err: fmt.Errorf("request started with provider %q", pend.Provider)}
	}
	if binding == "" || subtle.ConstantTimeCompare([]byte(BindingHash(binding)), []byte(pend.Binding)) != 1 {
		return nil, &Error{Reason: ReasonBinding}
	}
	disc, verifier, issParam, err := p.discover(ctx)
	if err != nil {
		return nil, err
	}
	// RFC 9207: an iss that is not this provider's is a mix-up; a
	// provider that says it sends iss must send it.
	if iss, ok := q["iss"]; ok || issParam {
		if len(iss) != 1 || iss[0] != p.cfg.Issuer {
			return nil, &Error{Reason: ReasonIssuer, Err: fmt.Errorf("iss %q, want %q", q.Get("iss"), p.cfg.Issuer)}
		}
	}
	if e := q.Get("error"); e != "" {
		return nil, &Error{Reason: ReasonDenied, ProviderError: e, Description: q.Get("error_description")}
	}
	code := q.Get("code")
	if code == "" {
		return nil, &Error{Reason: ReasonCode, Err: errors.New("no code")}
	}
	tok, err := p.oauth(disc, pend.RedirectURL).Exchange(oidc.ClientContext(ctx, p.client), code, oauth2.VerifierOption(pend.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return nil, &Error{Reason: ReasonCode, Err: err}
		}
		return nil, &Error{Reason: ReasonUnavailable, Err: err}
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, &Error{Reason: ReasonIDToken, Err: errors.New("no id_token in the token response")}
	}
	idt, err := verifier.Verify(oidc.ClientContext(ctx, p.client), raw)
	if err != nil {
		return nil, &Error{Reason: ReasonIDToken, Err: err}
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pend.Nonce)) != 1 {
		return nil, &Error{Reason: ReasonNonce}
	}
	var claims struct {
		PreferredUsername string `json:"preferred_username"`
		Email             string `json:"email"`
		EmailVerified     any    `json:"email_verified"`
		Name              string `json:"name"`
	}
	if err := idt.Claims(&claims); err != nil {
		return nil, &Error{Reason: ReasonIDToken, Err: err}
	}
	if idt.Subject == "" {
		return nil, &Error{Reason: ReasonIDToken, Err: errors.New("no sub")}
	}
	return &Identity{
		Issuer: idt.Issuer, Subject: idt.Subject, PreferredUsername: claims.PreferredUsername,
		Email: claims.Email, EmailVerified: claims.EmailVerified == true || claims.EmailVerified == "true", Name: claims.Name,
	}, nil
}

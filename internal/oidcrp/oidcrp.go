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

// Config is one configured provider: an OpenID Connect Issuer, or a
// Preset (presets.go).
type Config struct {
	// Name is the provider's name in the configuration and its callback
	// path.
	Name         string
	Issuer       string
	Preset       string
	ClientID     string
	ClientSecret string
	// Scopes requested (default: the preset's, else DefaultScopes);
	// "openid" is added when missing, except for GitHub.
	Scopes []string
	// Tenant is the microsoft preset's: common (default), organizations,
	// consumers or a tenant id.
	Tenant string
	// The apple preset's client secret is an ES256 JWT signed with
	// ApplePrivateKey (PEM, Apple's .p8) under AppleKeyID, issued by
	// AppleTeamID.
	AppleTeamID, AppleKeyID string
	ApplePrivateKey         []byte
}

// DefaultScopes are requested when a provider lists none.
var DefaultScopes = []string{oidc.ScopeOpenID, "email", "profile"}

// Provider is one provider, discovered on first use (a provider that is
// down at start-up delays nobody's start, and is tried again on the next
// sign-in).
type Provider struct {
	cfg    Config
	client *http.Client
	preset *preset      // nil: a plain OpenID Connect issuer
	secret *appleSecret // the apple preset's client secret

	mu       sync.Mutex
	disc     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	issParam bool // the provider says it sends iss (RFC 9207)
}

// New checks cfg and returns its Provider; client makes its requests
// (nil: a client with a 10 s timeout).
func New(cfg Config, client *http.Client) (*Provider, error) {
	switch {
	case cfg.Name == "":
		return nil, errors.New("a provider needs a name")
	case cfg.ClientID == "":
		return nil, fmt.Errorf("provider %s: client_id is required", cfg.Name)
	}
	var ps *preset
	var secret *appleSecret
	switch {
	case cfg.Preset != "" && cfg.Issuer != "":
		return nil, fmt.Errorf("provider %s: issuer and preset are mutually exclusive (the preset has its issuer built in)", cfg.Name)
	case cfg.Preset != "":
		var err error
		if ps, err = newPreset(cfg); err != nil {
			return nil, err
		}
		cfg.Issuer = ps.issuer
		if ps.issuer == "" {
			cfg.Issuer = ps.docIssuer
		}
		if len(cfg.Scopes) == 0 {
			cfg.Scopes = ps.scopes
		}
		if cfg.Preset == PresetApple {
			if secret, err = newAppleSecret(cfg); err != nil {
				return nil, err
			}
		}
	case cfg.Issuer == "":
		return nil, fmt.Errorf("provider %s: issuer or preset is required", cfg.Name)
	case cfg.Tenant != "" || cfg.AppleTeamID != "" || cfg.AppleKeyID != "" || len(cfg.ApplePrivateKey) > 0:
		return nil, fmt.Errorf("provider %s: tenant, team_id, key_id and private_key_file go with a preset", cfg.Name)
	}
	if u, err := url.Parse(cfg.Issuer); ps == nil && (err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "") {
		return nil, fmt.Errorf("provider %s: issuer %q is not an http(s) URL without query or fragment", cfg.Name, cfg.Issuer)
	}
	if len(cfg.Scopes) == 0 && ps == nil {
		cfg.Scopes = DefaultScopes
	}
	if !slices.Contains(cfg.Scopes, oidc.ScopeOpenID) && (ps == nil || !ps.oauthOnly) {
		cfg.Scopes = append([]string{oidc.ScopeOpenID}, cfg.Scopes...)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &Provider{cfg: cfg, client: client, preset: ps, secret: secret}, nil
}

// FormPost reports whether the provider answers with
// response_mode=form_post (a POST to the callback).
func (p *Provider) FormPost() bool { return p.preset != nil && p.preset.formPostFor(p.cfg.Scopes) }

// Scopes are the scopes requested.
func (p *Provider) Scopes() []string { return slices.Clone(p.cfg.Scopes) }

// Name is the provider's configured name.
func (p *Provider) Name() string { return p.cfg.Name }

// Issuer is the provider's issuer URL, as configured (and discovered);
// a preset's built-in one (GitHub: https://github.com, the links'
// issuer; Microsoft's multi-tenant endpoints: the issuer template).
func (p *Provider) Issuer() string { return p.cfg.Issuer }

// discover fetches the provider's metadata once it succeeds.
func (p *Provider) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.disc != nil {
		return p.disc, p.verifier, p.issParam, nil
	}
	ctx = oidc.ClientContext(ctx, p.client)
	base := p.cfg.Issuer
	if ps := p.preset; ps != nil && ps.discovery != "" {
		// Microsoft: the document of <host>/<tenant>/v2.0 states the
		// issuer the tenant's tokens carry (a template for the
		// multi-tenant ones, checked per token in Finish).
		base, ctx = ps.discovery, oidc.InsecureIssuerURLContext(ctx, p.cfg.Issuer)
	}
	disc, err := oidc.NewProvider(ctx, base)
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
	p.verifier = disc.Verifier(&oidc.Config{ClientID: p.cfg.ClientID, SkipIssuerCheck: p.preset != nil && p.preset.tenantIssuer != nil})
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
	// Intent ("signin", "link" or "api"), Return (a local path) and, for
	// "api", the guest's user and session are the caller's.
	Intent       string `json:"intent,omitempty"`
	Return       string `json:"return,omitempty"`
	GuestID      string `json:"guest_id,omitempty"`
	GuestSession string `json:"guest_session,omitempty"`
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

// oauth is the OAuth 2.0 client for one request: the discovered
// endpoints, or the preset's (GitHub). Apple's secret is made here.
func (p *Provider) oauth(disc *oidc.Provider, redirectURL string) (*oauth2.Config, error) {
	c := &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, RedirectURL: redirectURL, Scopes: p.cfg.Scopes}
	if disc != nil {
		c.Endpoint = disc.Endpoint()
	} else {
		c.Endpoint = oauth2.Endpoint{AuthURL: p.preset.authURL, TokenURL: p.preset.tokenURL}
	}
	if p.secret != nil {
		secret, err := p.secret.get()
		if err != nil {
			return nil, err
		}
		c.ClientSecret, c.Endpoint.AuthStyle = secret, oauth2.AuthStyleInParams
	}
	return c, nil
}

// oauthOnly: no discovery, no ID token (GitHub).
func (p *Provider) oauthOnly() bool { return p.preset != nil && p.preset.oauthOnly }

// AuthURL is the provider's authorization URL for the request whose
// Pending the caller stored under state.
func (p *Provider) AuthURL(ctx context.Context, state string, pend Pending) (string, error) {
	var disc *oidc.Provider
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(pend.Verifier)}
	if !p.oauthOnly() {
		var err error
		if disc, _, _, err = p.discover(ctx); err != nil {
			return "", err
		}
		opts = append(opts, oidc.Nonce(pend.Nonce))
	}
	if p.FormPost() {
		opts = append(opts, oauth2.SetAuthURLParam("response_mode", "form_post"))
	}
	c, err := p.oauth(disc, pend.RedirectURL)
	if err != nil {
		return "", err
	}
	return c.AuthCodeURL(state, opts...), nil
}

// issParamOK checks an authorization response's iss (RFC 9207).
func (p *Provider) issParamOK(iss string) bool {
	if ps := p.preset; ps != nil && ps.tenantIssuer != nil {
		return ps.issParamOK(iss)
	}
	return iss == p.cfg.Issuer
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
	var disc *oidc.Provider
	var verifier *oidc.IDTokenVerifier
	var issParam bool
	if !p.oauthOnly() {
		var err error
		if disc, verifier, issParam, err = p.discover(ctx); err != nil {
			return nil, err
		}
	}
	// RFC 9207: an iss that is not this provider's is a mix-up; a
	// provider that says it sends iss must send it.
	if iss, ok := q["iss"]; ok || issParam {
		if len(iss) != 1 || !p.issParamOK(iss[0]) {
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
	oc, err := p.oauth(disc, pend.RedirectURL)
	if err != nil {
		return nil, &Error{Reason: ReasonUnavailable, Err: err}
	}
	tok, err := oc.Exchange(oidc.ClientContext(ctx, p.client), code, oauth2.VerifierOption(pend.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		// GitHub answers a refused code with 200 and an error field.
		if errors.As(err, &re) && (re.ErrorCode != "" || re.Response != nil && re.Response.StatusCode < 500) {
			return nil, &Error{Reason: ReasonCode, Err: err}
		}
		return nil, &Error{Reason: ReasonUnavailable, Err: err}
	}
	if p.oauthOnly() {
		return p.githubUser(ctx, tok)
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
		TenantID          string `json:"tid"`
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
	if ps := p.preset; ps != nil && ps.tenantIssuer != nil {
		if err := ps.checkTenantIssuer(idt.Issuer, claims.TenantID); err != nil {
			return nil, &Error{Reason: ReasonIssuer, Err: err}
		}
	}
	return &Identity{
		Issuer: idt.Issuer, Subject: idt.Subject, PreferredUsername: claims.PreferredUsername,
		Email: claims.Email, EmailVerified: claims.EmailVerified == true || claims.EmailVerified == "true", Name: claims.Name,
	}, nil
}

package caddymodule

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
	"github.com/guestauth/caddy-guestauth/internal/oidcrp"
)

// BrowserProvider is another OpenID Connect provider visitors can sign in
// with: the sign-in and sign-up pages show "Continue with <label>" for it.
// The provider is found by discovery (<issuer>/.well-known/openid-configuration)
// on first use; the request uses PKCE (S256), a nonce and a state bound to
// the browser, the response's iss is checked (RFC 9207) and the ID token
// verified with the provider's keys. The account is the one linked to the
// ID token's issuer and subject (never an email address): a guest signing
// in with an identity linked to nobody becomes a member with the same id.
type BrowserProvider struct {
	// Name of the provider: letters, digits, - and _. Its callback, to
	// register at the provider, is <origin><pages_prefix>provider/<name>/callback
	// (such as http://localhost:8080/auth/provider/testidp/callback).
	Name string `json:"name"`
	// The provider's issuer URL, exactly as its discovery document
	// states it.
	Issuer string `json:"issuer"`
	// The client registered at the provider.
	ClientID string `json:"client_id"`
	// Its secret: use a placeholder such as {env.IDP_SECRET} so it stays
	// out of the config (resolved when the config loads).
	ClientSecret string `json:"client_secret,omitempty"`
	// Scopes requested. Default: openid email profile ("openid" is
	// always requested).
	Scopes []string `json:"scopes,omitempty"`
	// Button text: "Continue with <label>". Default: the name.
	Label string `json:"label,omitempty"`
}

// providerNameOK: a name fits a URL path segment as it is.
func providerNameOK(name string) bool {
	if name == "" || len(name) > 64 {
		return false
	}
	for _, c := range name {
		ok := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// validateProviders checks the providers (oidcrp.New checks each one's
// issuer and client) and that their names are unique.
func validateProviders(ps []*BrowserProvider) error {
	seen := map[string]bool{}
	for _, p := range ps {
		if !providerNameOK(p.Name) {
			return fmt.Errorf("browser provider name %q: use letters, digits, - and _", p.Name)
		}
		if seen[p.Name] {
			return fmt.Errorf("browser provider %q is configured twice", p.Name)
		}
		seen[p.Name] = true
		if _, err := p.build(); err != nil {
			return fmt.Errorf("browser %w", err)
		}
	}
	return nil
}

// build makes the provider's relying party, its secret's placeholders
// resolved.
func (p *BrowserProvider) build() (*oidcrp.Provider, error) {
	return oidcrp.New(oidcrp.Config{
		Name: p.Name, Issuer: p.Issuer, ClientID: p.ClientID,
		ClientSecret: caddy.NewReplacer().ReplaceKnown(p.ClientSecret, ""), Scopes: p.Scopes,
	}, nil)
}

// label is the button's text.
func (p *BrowserProvider) label() string {
	if l := strings.TrimSpace(p.Label); l != "" {
		return l
	}
	return p.Name
}

// parseBrowserProvider reads one `provider <name> { issuer; client_id;
// client_secret; scopes; label }` block.
func parseBrowserProvider(d *caddyfile.Dispenser) (*BrowserProvider, error) {
	p := &BrowserProvider{}
	if !d.NextArg() {
		return nil, d.Err("provider needs a name: provider <name> { ... }")
	}
	p.Name = d.Val()
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	var opts caddyopt.Block
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch key := d.Val(); key {
		case "issuer":
			err = opts.String(d, &p.Issuer)
		case "client_id":
			err = opts.String(d, &p.ClientID)
		case "client_secret":
			err = opts.String(d, &p.ClientSecret)
		case "label":
			err = opts.String(d, &p.Label)
		case "scopes":
			if err = opts.Once(d, key); err == nil {
				err = caddyopt.Append(d, &p.Scopes)
			}
		default:
			err = d.Errf("unknown provider option %q", key)
		}
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

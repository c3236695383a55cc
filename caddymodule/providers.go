package caddymodule

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
	"github.com/guestauth/caddy-guestauth/internal/oidcrp"
)

// BrowserProvider is another provider visitors can sign in with, an
// OpenID Connect issuer or a preset (github, google, microsoft, apple):
// the sign-in and sign-up pages show "Continue with <label>" for it.
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
	// states it. Not with Preset.
	Issuer string `json:"issuer,omitempty"`
	// Preset is a provider whose endpoints and claim mapping are built
	// in, instead of Issuer: github (OAuth 2.0: the user's numeric id is
	// the subject, its login the preferred username, the links' issuer
	// https://github.com), google (https://accounts.google.com),
	// microsoft (see Tenant) or apple (see TeamID).
	Preset string `json:"preset,omitempty"`
	// Tenant (microsoft): common (default: work, school and personal
	// accounts), organizations, consumers, or a tenant id. The ID token's
	// issuer must be https://login.microsoftonline.com/<its tid>/v2.0
	// with a tid the tenant allows.
	Tenant string `json:"tenant,omitempty"`
	// TeamID, KeyID and PrivateKeyFile (apple, all three required): the
	// client secret is an ES256 JWT signed with the key downloaded from
	// Apple (a .p8 file), made when needed and reused for 30 minutes.
	// client_secret is not used.
	TeamID         string `json:"team_id,omitempty"`
	KeyID          string `json:"key_id,omitempty"`
	PrivateKeyFile string `json:"private_key_file,omitempty"`
	// The client registered at the provider.
	ClientID string `json:"client_id"`
	// Its secret: use a placeholder such as {env.IDP_SECRET} so it stays
	// out of the config (resolved when the config loads).
	ClientSecret string `json:"client_secret,omitempty"`
	// Scopes requested. Default: openid email profile; github: none;
	// apple: openid (name or email make Apple answer with a form POST).
	// "openid" is always requested, except from GitHub.
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
	repl := caddy.NewReplacer()
	cfg := oidcrp.Config{
		Name: p.Name, Issuer: p.Issuer, Preset: p.Preset, ClientID: p.ClientID,
		ClientSecret: repl.ReplaceKnown(p.ClientSecret, ""), Scopes: p.Scopes,
		Tenant: p.Tenant, AppleTeamID: p.TeamID, AppleKeyID: p.KeyID,
	}
	if p.PrivateKeyFile != "" {
		key, err := os.ReadFile(repl.ReplaceKnown(p.PrivateKeyFile, ""))
		if err != nil {
			return nil, fmt.Errorf("provider %s: private_key_file: %w", p.Name, err)
		}
		cfg.ApplePrivateKey = key
	}
	return oidcrp.New(cfg, nil)
}

// label is the button's text.
func (p *BrowserProvider) label() string {
	if l := strings.TrimSpace(p.Label); l != "" {
		return l
	}
	return p.Name
}

// parseBrowserProvider reads one `provider <name> { issuer | preset;
// client_id; client_secret; scopes; label; tenant; team_id; key_id;
// private_key_file }` block.
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
		case "preset":
			if err = opts.String(d, &p.Preset); err == nil && !slices.Contains(oidcrp.Presets, p.Preset) {
				err = d.Errf("unknown provider preset %q: one of %s", p.Preset, strings.Join(oidcrp.Presets, ", "))
			}
		case "tenant":
			err = opts.String(d, &p.Tenant)
		case "team_id":
			err = opts.String(d, &p.TeamID)
		case "key_id":
			err = opts.String(d, &p.KeyID)
		case "private_key_file":
			err = opts.String(d, &p.PrivateKeyFile)
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
	if p.Issuer != "" && p.Preset != "" {
		return nil, d.Errf("provider %s: issuer and preset are mutually exclusive (the preset has its issuer built in)", p.Name)
	}
	return p, nil
}

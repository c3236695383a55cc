package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"
	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"golang.org/x/oauth2"
)

// Presets: providers whose endpoints and claim mapping are built in.
const (
	PresetGitHub    = "github"
	PresetGoogle    = "google"
	PresetMicrosoft = "microsoft"
	PresetApple     = "apple"
)

// Presets lists the preset names.
var Presets = []string{PresetGitHub, PresetGoogle, PresetMicrosoft, PresetApple}

// The providers' documented URLs.
const (
	githubIssuer    = "https://github.com" // the links' issuer: GitHub has no OpenID Connect issuer
	githubAuthURL   = "https://github.com/login/oauth/authorize"
	githubTokenURL  = "https://github.com/login/oauth/access_token" //nolint:gosec // G101: a URL, not a credential
	githubUserURL   = "https://api.github.com/user"
	googleIssuer    = "https://accounts.google.com"
	appleIssuer     = "https://appleid.apple.com"
	microsoftHost   = "https://login.microsoftonline.com/"
	msConsumersTID  = "9188040d-6c67-4c5b-b112-36a304b66dad" // the tenant of personal Microsoft accounts
	msTenantIDToken = "{tenantid}"                           // the multi-tenant documents' issuer template
	appleSecretTTL  = time.Hour
)

var guidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// preset is how a preset differs from a plain OpenID Connect issuer.
type preset struct {
	// issuer is the OpenID Connect issuer (GitHub: the links' issuer).
	issuer string
	// discovery is the base URL of the discovery document when it is
	// not issuer (Microsoft's <host>/<tenant>/v2.0), and docIssuer the
	// issuer that document states (the multi-tenant ones: a template).
	discovery, docIssuer string
	// oauthOnly: OAuth 2.0 without OpenID Connect (GitHub): fixed
	// endpoints, no ID token, the user read from userURL.
	oauthOnly                  bool
	authURL, tokenURL, userURL string
	// scopes are the default scopes.
	scopes []string
	// tenantIssuer: the ID token's issuer is microsoftHost + its tid +
	// "/v2.0", with tid a tenant id that tenants allows.
	tenantIssuer func(tid string) bool
	// formPost lists the scopes whose request must use
	// response_mode=form_post (Apple's name and email).
	formPost []string
}

// newPreset is the preset cfg names, its options checked.
func newPreset(cfg Config) (*preset, error) {
	if cfg.Preset != PresetMicrosoft && cfg.Tenant != "" {
		return nil, fmt.Errorf("provider %s: tenant is a microsoft preset option", cfg.Name)
	}
	if cfg.Preset != PresetApple && (cfg.AppleTeamID != "" || cfg.AppleKeyID != "" || len(cfg.ApplePrivateKey) > 0) {
		return nil, fmt.Errorf("provider %s: team_id, key_id and private_key_file are apple preset options", cfg.Name)
	}
	switch cfg.Preset {
	case PresetGitHub:
		return &preset{issuer: githubIssuer, oauthOnly: true, authURL: githubAuthURL, tokenURL: githubTokenURL, userURL: githubUserURL}, nil
	case PresetGoogle:
		return &preset{issuer: googleIssuer, scopes: DefaultScopes}, nil
	case PresetApple:
		if cfg.ClientSecret != "" {
			return nil, fmt.Errorf("provider %s: the apple preset makes its client secret from team_id, key_id and private_key_file; client_secret is not used", cfg.Name)
		}
		if cfg.AppleTeamID == "" || cfg.AppleKeyID == "" || len(cfg.ApplePrivateKey) == 0 {
			return nil, fmt.Errorf("provider %s: the apple preset needs team_id, key_id and private_key_file", cfg.Name)
		}
		return &preset{issuer: appleIssuer, scopes: []string{"openid"}, formPost: []string{"name", "email"}}, nil
	case PresetMicrosoft:
		return microsoftPreset(cfg)
	}
	return nil, fmt.Errorf("provider %s: unknown preset %q (one of github, google, microsoft, apple)", cfg.Name, cfg.Preset)
}

// microsoftPreset is the Microsoft identity platform (v2.0) for tenant:
// common (work, school and personal accounts), organizations (work and
// school), consumers (personal), or one tenant's id. The multi-tenant
// endpoints sign ID tokens whose issuer names the user's tenant, so the
// issuer is checked against that template and the token's tid.
func microsoftPreset(cfg Config) (*preset, error) {
	tenant := cfg.Tenant
	if tenant == "" {
		tenant = "common"
	}
	p := &preset{discovery: microsoftHost + tenant + "/v2.0", scopes: DefaultScopes}
	switch {
	case tenant == "common":
		p.tenantIssuer = guidRe.MatchString
	case tenant == "organizations":
		p.tenantIssuer = func(tid string) bool { return guidRe.MatchString(tid) && tid != msConsumersTID }
	case tenant == "consumers":
		p.issuer = microsoftHost + msConsumersTID + "/v2.0"
	case guidRe.MatchString(tenant):
		p.issuer = microsoftHost + tenant + "/v2.0"
	default:
		return nil, fmt.Errorf("provider %s: tenant %q: use common, organizations, consumers or the tenant's id (a GUID, lowercase)", cfg.Name, tenant)
	}
	p.docIssuer = p.issuer
	if p.tenantIssuer != nil {
		p.docIssuer = microsoftHost + msTenantIDToken + "/v2.0"
	}
	return p, nil
}

// checkTenantIssuer checks an ID token's issuer against Microsoft's
// template: microsoftHost + tid + "/v2.0", with tid the token's own and
// one the tenant setting allows.
func (ps *preset) checkTenantIssuer(iss, tid string) error {
	if !ps.tenantIssuer(tid) || iss != microsoftHost+tid+"/v2.0" {
		return fmt.Errorf("issuer %q with tid %q does not fit %s", iss, tid, ps.docIssuer)
	}
	return nil
}

// issParamOK checks an authorization response's iss (RFC 9207) for a
// multi-tenant Microsoft preset, which would name the user's tenant.
func (ps *preset) issParamOK(iss string) bool {
	tid, ok := cutTenant(iss)
	return ok && ps.tenantIssuer(tid)
}

func cutTenant(iss string) (string, bool) {
	if len(iss) != len(microsoftHost)+36+len("/v2.0") || iss[:len(microsoftHost)] != microsoftHost || iss[len(iss)-5:] != "/v2.0" {
		return "", false
	}
	return iss[len(microsoftHost) : len(microsoftHost)+36], true
}

// formPostFor reports whether scopes need response_mode=form_post.
func (ps *preset) formPostFor(scopes []string) bool {
	for _, s := range ps.formPost {
		if slices.Contains(scopes, s) {
			return true
		}
	}
	return false
}

// githubUser reads the GitHub user the access token belongs to: its
// numeric id is the subject (logins can be renamed), its login the
// preferred username.
func (p *Provider) githubUser(ctx context.Context, tok *oauth2.Token) (*Identity, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.preset.userURL, nil)
	if err != nil {
		return nil, &Error{Reason: ReasonUnavailable, Err: err}
	}
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	tok.SetAuthHeader(req)
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, &Error{Reason: ReasonUnavailable, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, &Error{Reason: ReasonUnavailable, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		reason := ReasonUnavailable
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			reason = ReasonCode
		}
		return nil, &Error{Reason: reason, Err: fmt.Errorf("GitHub user API: %s", resp.Status)}
	}
	var u struct {
		ID    json.Number `json:"id"`
		Login string      `json:"login"`
		Name  string      `json:"name"`
	}
	if err := json.Unmarshal(body, &u); err != nil {
		return nil, &Error{Reason: ReasonIDToken, Err: fmt.Errorf("GitHub user API: %w", err)}
	}
	id, err := strconv.ParseUint(u.ID.String(), 10, 64)
	if err != nil || id == 0 {
		return nil, &Error{Reason: ReasonIDToken, Err: fmt.Errorf("GitHub user API: id %q is not a user id", u.ID)}
	}
	return &Identity{Issuer: githubIssuer, Subject: strconv.FormatUint(id, 10), PreferredUsername: u.Login, Name: u.Name}, nil
}

// appleSecret makes Apple's client secret: an ES256 JWT signed with the
// developer's key (iss the team id, sub the client id, aud Apple), valid
// for appleSecretTTL and reused for half of it.
type appleSecret struct {
	teamID, keyID, clientID string
	key                     jwk.Key
	now                     func() time.Time

	mu      sync.Mutex
	current string
	renew   time.Time
}

func newAppleSecret(cfg Config) (*appleSecret, error) {
	key, err := jwk.ParseKey(cfg.ApplePrivateKey, jwk.WithPEM(true))
	if err != nil {
		return nil, fmt.Errorf("provider %s: private_key_file: %w", cfg.Name, err)
	}
	if key.KeyType() != "EC" {
		return nil, fmt.Errorf("provider %s: private_key_file: an EC P-256 private key (Apple's .p8) is needed, not %s", cfg.Name, key.KeyType())
	}
	if _, err := jwk.PublicKeyOf(key); err != nil {
		return nil, fmt.Errorf("provider %s: private_key_file: %w", cfg.Name, err)
	}
	s := &appleSecret{teamID: cfg.AppleTeamID, keyID: cfg.AppleKeyID, clientID: cfg.ClientID, key: key, now: time.Now}
	if _, err := s.get(); err != nil { // the key signs, or the config is refused
		return nil, fmt.Errorf("provider %s: private_key_file: %w", cfg.Name, err)
	}
	return s, nil
}

func (s *appleSecret) get() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.current != "" && now.Before(s.renew) {
		return s.current, nil
	}
	tok, err := jwt.NewBuilder().Issuer(s.teamID).Subject(s.clientID).Audience([]string{appleIssuer}).
		IssuedAt(now).Expiration(now.Add(appleSecretTTL)).Build()
	if err != nil {
		return "", err
	}
	tok.Options().Enable(jwt.FlattenAudience) // "aud": "https://appleid.apple.com", as Apple documents it
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.KeyIDKey, s.keyID); err != nil {
		return "", err
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256, s.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", err
	}
	if len(signed) == 0 {
		return "", errors.New("empty client secret")
	}
	s.current, s.renew = string(signed), now.Add(appleSecretTTL/2)
	return s.current, nil
}

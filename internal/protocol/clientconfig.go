package protocol

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ClientConfig is a client as the module's config gives it.
type ClientConfig struct {
	ID string
	// SecretGiven: a client_secret is configured (it may resolve to
	// nothing: an unset placeholder); Secret is what it resolved to.
	SecretGiven bool
	Secret      []byte
	Public      bool
	// Guests is the configured guest policy ("" for the default).
	Guests                               string
	RedirectURIs, PostLogoutRedirectURIs []string
	ManageUsers                          bool
}

// NewClients makes the Clients of the configured ones, by id.
func NewClients(configs []ClientConfig) map[string]*Client {
	clients := make(map[string]*Client, len(configs))
	for _, c := range configs {
		pc := NewClient(c.ID, c.Secret, c.Public, c.Guests)
		pc.RedirectURIs, pc.PostLogoutRedirectURIs = c.RedirectURIs, c.PostLogoutRedirectURIs
		pc.ManageUsers = c.ManageUsers
		clients[c.ID] = pc
	}
	return clients
}

// CheckClients checks the configured clients, in order: each has an id
// of its own, a valid guest policy (ValidateClient), a secret unless it is
// public, valid redirect URIs (which need the browser pages) and
// manage_users only with a secret.
func CheckClients(configs []ClientConfig, browser bool) error {
	seen := map[string]bool{}
	for _, c := range configs {
		if c.ID == "" {
			return errors.New("a client needs a client_id")
		}
		if seen[c.ID] {
			return fmt.Errorf("client %q is configured twice", c.ID)
		}
		seen[c.ID] = true
		if err := ValidateClient(c.ID, c.SecretGiven, c.Public, c.Guests); err != nil {
			return err
		}
		if !c.Public && len(c.Secret) == 0 {
			return fmt.Errorf("client %q has an empty secret (is its environment variable set?)", c.ID)
		}
		if err := c.checkRedirects(browser); err != nil {
			return err
		}
		if c.ManageUsers && c.Public {
			return fmt.Errorf("client %q is public: it cannot manage users (manage_users needs a secret)", c.ID)
		}
	}
	return nil
}

// checkRedirects checks a client's redirect_uri and
// post_logout_redirect_uri: absolute URIs without a fragment (RFC 6749
// §3.1.2), no scheme a browser would run (javascript:, data:, vbscript:),
// each listed once; and they need the browser pages, which the
// authorization and end-session endpoints use.
func (c ClientConfig) checkRedirects(browser bool) error {
	for _, list := range []struct {
		name string
		uris []string
	}{{"redirect_uri", c.RedirectURIs}, {"post_logout_redirect_uri", c.PostLogoutRedirectURIs}} {
		if len(list.uris) > 0 && !browser {
			return fmt.Errorf("client %q: %s needs browser (the sign-in pages are the authorization endpoint's interface)", c.ID, list.name)
		}
		seen := map[string]bool{}
		for _, raw := range list.uris {
			if err := checkRedirect(raw); err != nil {
				return fmt.Errorf("client %q: %s %q: %v", c.ID, list.name, raw, err)
			}
			if seen[raw] {
				return fmt.Errorf("client %q: %s %q is listed twice", c.ID, list.name, raw)
			}
			seen[raw] = true
		}
	}
	return nil
}

func checkRedirect(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return err
	case u.Scheme == "":
		return fmt.Errorf("must be an absolute URI")
	case strings.Contains(raw, "#"):
		return fmt.Errorf("must not have a fragment")
	case u.User != nil:
		return fmt.Errorf("must not carry user information")
	}
	switch strings.ToLower(u.Scheme) {
	case "javascript", "data", "vbscript", "file", "blob":
		return fmt.Errorf("the scheme %s cannot be a redirect", u.Scheme)
	case "http", "https":
		if u.Host == "" {
			return fmt.Errorf("must name a host")
		}
	}
	return nil
}

// ParseIssuer checks a configured issuer, an absolute http(s) URL without
// query or fragment, and returns it without a trailing slash, and its
// origin (scheme://host).
func ParseIssuer(issuer string) (trimmed, origin string, err error) {
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", "", fmt.Errorf("issuer %q must be an absolute http(s) URL without query or fragment", issuer)
	}
	return strings.TrimSuffix(issuer, "/"), u.Scheme + "://" + u.Host, nil
}

// RequestOrigin is the scheme://host r came to, the issuer and origin of
// a config without an issuer.
func RequestOrigin(r *http.Request) string {
	if r.TLS != nil {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

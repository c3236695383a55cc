package caddymodule

import (
	"fmt"
	"net/url"
	"strings"
)

// validateRedirects checks a client's redirect_uri and
// post_logout_redirect_uri: absolute URIs without a fragment (RFC 6749
// §3.1.2), no scheme a browser would run (javascript:, data:, vbscript:),
// each listed once; and they need the browser pages, which the
// authorization and end-session endpoints use.
func validateRedirects(c Client, browser bool) error {
	for _, list := range []struct {
		name string
		uris []string
	}{{"redirect_uri", c.RedirectURIs}, {"post_logout_redirect_uri", c.PostLogoutRedirectURIs}} {
		if len(list.uris) > 0 && !browser {
			return fmt.Errorf("client %q: %s needs browser (the sign-in pages are the authorization endpoint's interface)", c.ClientID, list.name)
		}
		seen := map[string]bool{}
		for _, raw := range list.uris {
			if err := checkRedirect(raw); err != nil {
				return fmt.Errorf("client %q: %s %q: %v", c.ClientID, list.name, raw, err)
			}
			if seen[raw] {
				return fmt.Errorf("client %q: %s %q is listed twice", c.ClientID, list.name, raw)
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

package pages

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode"
)

// CheckConfig checks the configured fields of p (the browser block's
// options): Prefix, CookieName, CookieSecure, SiteName and Home.
func (p *Pages) CheckConfig() error {
	if !strings.HasPrefix(p.Prefix, "/") || strings.ContainsAny(p.Prefix, "?#") {
		return errors.New("browser pages_prefix must be a path starting with /")
	}
	if !ValidCookieName(p.CookieName) || strings.HasPrefix(p.CookieName, "__") {
		return errors.New("browser cookie_name must be a cookie token not starting with __")
	}
	switch p.CookieSecure {
	case SecureAuto, SecureAlways, SecureNever:
	default:
		return fmt.Errorf("browser cookie_secure must be auto, always or never, not %q", p.CookieSecure)
	}
	if len(p.SiteName) > maxSiteName || strings.IndexFunc(p.SiteName, unicode.IsControl) >= 0 {
		return fmt.Errorf("browser site_name must be at most %d characters, none of them a control character", maxSiteName)
	}
	if !validHome(p.Home) {
		return fmt.Errorf("browser home %q must be a path of this site (/...) or an absolute http(s) URL", p.Home)
	}
	return nil
}

const maxSiteName = 100

// validHome reports whether s can be the pages' link to the app: a path
// of this site (not //host, no backslash, which browsers read as /), or an
// absolute http(s) URL; no control character either way.
func validHome(s string) bool {
	if strings.IndexFunc(s, unicode.IsControl) >= 0 || strings.Contains(s, "\\") {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.User != nil {
		return false
	}
	if u.Scheme == "" {
		return u.Host == "" && strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//")
	}
	return (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

package pages

// What the authorization and end-session endpoints (internal/protocol)
// need of the browser side: links to the pages that come back to them,
// ending a browser session, and the signed-out page.

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// PageURL is the path of page that returns to returnTo (a path of this
// site) when done, with loginHint as the username when it can be one.
func (p *Pages) PageURL(page, returnTo, loginHint string) string {
	q := url.Values{"return_to": {returnTo}}
	if loginHint = strings.TrimSpace(loginHint); loginHint != "" && accounts.ValidateName(loginHint) == nil {
		q.Set("login_hint", loginHint)
	}
	return p.Prefix + page + "?" + q.Encode()
}

// EndSession ends the browser session id (reporting session.revoked, cause
// logout) and clears its cookie.
func (p *Pages) EndSession(w http.ResponseWriter, r *http.Request, id *accounts.Identity) error {
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	if err := p.Accounts.EndBrowserSession(ctx, id); err != nil {
		return err
	}
	p.clearSession(w, r)
	return nil
}

// StartSession gives the browser a new session of u (the guest an
// authorization request promotes), replacing prev's (nil for none), and
// sets its cookie.
func (p *Pages) StartSession(w http.ResponseWriter, r *http.Request, prev *accounts.Identity, u *model.User) (*accounts.Identity, error) {
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	login, err := p.Accounts.RotateBrowserSession(ctx, prev, u, p.Issuer(r))
	if err != nil {
		return nil, err
	}
	p.setSession(w, r, login)
	return &accounts.Identity{User: login.User, Session: login.Session}, nil
}

// SignedOut shows the sign-out page to a visitor just signed out.
func (p *Pages) SignedOut(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Security-Policy", p.csp())
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	return p.render(w, &PageData{
		Page: "signout", Title: pageTitles["signout"], Prefix: p.Prefix, ReturnTo: "/",
		Message: "You are signed out.", Status: http.StatusOK, SiteCSS: p.Templates.siteCSS != nil,
	})
}

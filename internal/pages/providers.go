package pages

// Sign-in with another provider: a "Continue with" link starts the
// request (GET <prefix>provider/<name>/start), the provider sends the
// browser back to <prefix>provider/<name>/callback. The request's secrets
// live in a flow state named by the state parameter (any node finishes
// it, once), bound to the browser by a cookie holding a random value whose
// hash the flow state keeps.

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/oidcrp"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
)

// Provider is a provider the pages offer, in the order shown.
type Provider struct {
	RP *oidcrp.Provider
	// Label is the button's text after "Continue with".
	Label string
}

// ProviderButton is a provider as the page templates see it. Linked is
// set on the account page when the member has an account there linked,
// which then offers no "Link" button for it.
type ProviderButton struct {
	Name, Label string
	Linked      bool
}

// PageLink is a linked provider account, on the account page.
type PageLink struct {
	Provider, Label, Issuer, Subject string
	LinkedAt                         time.Time
}

// providerTTL bounds the time from "Continue with" to the callback.
const providerTTL = 10 * time.Minute

// bindingCookie is the cookie binding a provider request to its browser.
// When Secure it has the __Secure- prefix, not __Host- (which browsers
// accept only with Path=/): it is sent to the provider pages alone, and,
// with no Domain, it is host-only all the same.
const bindingCookie = "guestauth_provider"

func (p *Pages) bindingCookieName(r *http.Request) string {
	if p.secure(r) {
		return "__Secure-" + bindingCookie
	}
	return bindingCookie
}

func (p *Pages) findProvider(name string) *Provider {
	for i := range p.Providers {
		if p.Providers[i].RP.Name() == name {
			return &p.Providers[i]
		}
	}
	return nil
}

func (p *Pages) providerButtons() []ProviderButton {
	out := make([]ProviderButton, 0, len(p.Providers))
	for _, pr := range p.Providers {
		out = append(out, ProviderButton{Name: pr.RP.Name(), Label: pr.Label})
	}
	return out
}

// pageLinks lists the user's linked providers for the account page.
func (p *Pages) pageLinks(r *http.Request, userID string) ([]PageLink, error) {
	links, err := p.Accounts.ProviderLinks(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	out := make([]PageLink, 0, len(links))
	for _, l := range links {
		label := l.Provider
		if pr := p.findProvider(l.Provider); pr != nil {
			label = pr.Label
		}
		out = append(out, PageLink{Provider: l.Provider, Label: label, Issuer: l.Issuer, Subject: l.Subject, LinkedAt: l.LinkedAt})
	}
	return out, nil
}

// loadAccountLists fills the account page's lists of the ways to sign in
// (linked providers, passkeys), also when a form on it is refused.
func (p *Pages) loadAccountLists(r *http.Request, d *PageData, id *accounts.Identity) error {
	if len(p.Providers) > 0 {
		links, err := p.pageLinks(r, id.User.ID)
		if err != nil {
			return err
		}
		d.Links = links
		for i := range d.Providers {
			for _, l := range links {
				d.Providers[i].Linked = d.Providers[i].Linked || l.Provider == d.Providers[i].Name
			}
		}
	}
	return p.loadPasskeys(r, d, id)
}

// serveProvider serves provider/<name>/start and provider/<name>/callback
// (rest is what follows "provider/").
func (p *Pages) serveProvider(w http.ResponseWriter, r *http.Request, rest string) error {
	name, step, _ := strings.Cut(rest, "/")
	pr := p.findProvider(name)
	id, err := p.Identity(w, r)
	if err != nil {
		return p.Fault(w, r, err, "authenticating browser session")
	}
	if pr == nil || (step != "start" && step != "callback") {
		return p.errorPage(w, r, http.StatusNotFound, "There is no such page.", id)
	}
	if step == "callback" && r.Method == http.MethodPost && pr.RP.FormPost() {
		return p.providerFormPost(w, r, pr)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return p.errorPage(w, r, http.StatusMethodNotAllowed, "This method is not allowed here.", id)
	}
	if step == "start" {
		return p.providerStart(w, r, pr, id)
	}
	return p.providerCallback(w, r, pr, id)
}

// ProviderStartURL implements protocol.Browser: the start of a sign-in
// with the provider name for an API client's guest (handoff).
func (p *Pages) ProviderStartURL(r *http.Request, name, handoff string) (string, bool) {
	if p.findProvider(name) == nil {
		return "", false
	}
	return p.LinkBase(r) + "provider/" + name + "/start?" + url.Values{"handoff": {handoff}}.Encode(), true
}

// providerStart stores the request and sends the browser to the provider.
func (p *Pages) providerStart(w http.ResponseWriter, r *http.Request, pr *Provider, id *accounts.Identity) error {
	q := r.URL.Query()
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	intent := "signin"
	if q.Get("intent") == "link" && id != nil && !id.User.IsAnonymous() {
		intent = "link"
	}
	var ho protocol.ProviderHandoff
	if h := q.Get("handoff"); h != "" {
		// An API client's guest: the URL works once.
		_, err := p.Accounts.TakeFlowState(ctx, accounts.FlowHandoff, h, &ho)
		if errors.Is(err, model.ErrNotFound) || errors.Is(err, model.ErrSpent) || err == nil && ho.Provider != pr.RP.Name() {
			return p.errorPage(w, r, http.StatusBadRequest, "This link has expired or was already used. Go back to the app and start again.", id)
		}
		if err != nil {
			return p.Fault(w, r, err, "taking an app's provider sign-in")
		}
		intent = "api"
	}
	pend, binding, err := pr.RP.NewPending(p.LinkBase(r) + "provider/" + pr.RP.Name() + "/callback")
	if err != nil {
		return p.Fault(w, r, err, "starting a provider sign-in")
	}
	pend.Intent, pend.Return = intent, safeReturn(q.Get("return_to"))
	if intent == "api" {
		pend.Return, pend.GuestID, pend.GuestSession = ho.Resume, ho.UserID, ho.SessionID
	}
	state, err := p.Accounts.PutFlowState(ctx, accounts.FlowProvider, providerTTL, pend, p.LimitKey(r))
	if err != nil {
		return p.providerError(w, r, err, id)
	}
	target, err := pr.RP.AuthURL(ctx, state, pend)
	if err != nil {
		return p.providerError(w, r, err, id)
	}
	p.putCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure on HTTPS, as the session's
		Name: p.bindingCookieName(r), Value: binding, Path: p.Prefix + "provider/", MaxAge: int(providerTTL / time.Second),
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteLaxMode,
	})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusSeeOther) //nolint:gosec // G710: the configured provider's discovered authorization endpoint
	return nil
}

// providerCallback finishes the request: the flow state is taken (once),
// the provider's answer checked, and the account signed in or linked.
func (p *Pages) providerCallback(w http.ResponseWriter, r *http.Request, pr *Provider, id *accounts.Identity) error {
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	q := r.URL.Query()
	binding := ""
	if c, err := r.Cookie(p.bindingCookieName(r)); err == nil {
		binding = c.Value
	}
	// The binding is one request's: gone whatever the outcome.
	p.putCookie(w, &http.Cookie{ //nolint:gosec // G124: Secure on HTTPS, as the session's
		Name: p.bindingCookieName(r), Value: "", Path: p.Prefix + "provider/", MaxAge: -1,
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteLaxMode,
	})
	var pend oidcrp.Pending
	if _, err := p.Accounts.TakeFlowState(ctx, accounts.FlowProvider, q.Get("state"), &pend); err != nil {
		if errors.Is(err, model.ErrNotFound) || errors.Is(err, model.ErrSpent) {
			return p.errorPage(w, r, http.StatusBadRequest, "This sign-in has expired or was already used. Start again from the sign-in page.", id)
		}
		return p.Fault(w, r, err, "taking a provider sign-in")
	}
	ident, err := pr.RP.Finish(ctx, q, pend, binding)
	if err != nil {
		return p.providerError(w, r, err, id)
	}
	pid := accounts.ProviderIdentity{Provider: pr.RP.Name(), Issuer: ident.Issuer, Subject: ident.Subject, PreferredUsername: ident.PreferredUsername}
	var login *accounts.BrowserLogin
	ret := pend.Return
	if pend.Intent == "api" {
		// For the app's guest, whatever session this browser has: its
		// session (the app's tokens) ends, and the browser gets the
		// member's, with which the stored authorization request (ret)
		// gives the app a code.
		guest, gerr := p.Accounts.SessionIdentity(ctx, pend.GuestID, pend.GuestSession)
		if errors.Is(gerr, model.ErrNotFound) {
			return p.errorPage(w, r, http.StatusBadRequest, "The app's guest session has ended. Go back to the app and start again.", id)
		}
		if gerr != nil {
			return p.Fault(w, r, gerr, "reading an app's guest")
		}
		prev := id
		login, _, err = p.Accounts.ProviderSignIn(ctx, guest, p.Issuer(r), pid, p.LimitKey(r))
		if err == nil && prev != nil && prev.Session.ID != login.Session.ID {
			// The browser's own session is replaced by the member's: it
			// ends too rather than linger unreachable until it expires.
			if eerr := p.Accounts.EndBrowserSession(ctx, prev); eerr != nil && !errors.Is(eerr, model.ErrNotFound) {
				p.Logger.Warn("ending the browser's previous session", zap.Error(eerr))
			}
		}
	} else if pend.Intent == "link" && id != nil && !id.User.IsAnonymous() {
		login, err = p.Accounts.LinkProvider(ctx, id, p.Issuer(r), pid)
		ret = p.Prefix + "account"
	} else {
		login, _, err = p.Accounts.ProviderSignIn(ctx, id, p.Issuer(r), pid, p.LimitKey(r))
	}
	if login != nil {
		p.setSession(w, r, login)
		id = &accounts.Identity{User: login.User, Session: login.Session}
	}
	if err != nil {
		return p.providerError(w, r, err, id)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, safeReturn(ret), http.StatusSeeOther) //nolint:gosec // G710: a same-origin path (safeReturn)
	return nil
}

// providerFormPost turns a provider's response_mode=form_post answer
// (Apple's, when name or email is asked) into the GET the callback
// serves. The POST comes from the provider's site, so the browser sends
// no SameSite=Lax cookie with it; the 303 makes a top-level GET
// navigation, with which it does (the session and the binding). Nothing
// is read or changed here: the state, binding and code are checked on the
// GET as for any provider. Only the response's parameters go on (not
// Apple's "user" JSON, never used: accounts are never found by email).
func (p *Pages) providerFormPost(w http.ResponseWriter, r *http.Request, pr *Provider) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
	if err := r.ParseForm(); err != nil {
		return p.Error(w, r, http.StatusBadRequest, "The form could not be read.")
	}
	q := url.Values{}
	for _, k := range []string{"code", "state", "iss", "error", "error_description"} {
		if v, ok := r.PostForm[k]; ok {
			q[k] = v
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, p.Prefix+"provider/"+pr.RP.Name()+"/callback?"+q.Encode(), http.StatusSeeOther) //nolint:gosec // G710: our own callback path
	return nil
}

// providerMessages are the error page's words for a refused callback.
var providerMessages = map[string]string{
	oidcrp.ReasonDenied:  "The provider did not sign you in.",
	oidcrp.ReasonBinding: "This sign-in was started in another browser (or its cookie is gone). Start again from the sign-in page.",
	oidcrp.ReasonIssuer:  "The answer did not come from the provider this sign-in was sent to.",
	oidcrp.ReasonCode:    "The provider did not accept this sign-in. Start again from the sign-in page.",
	oidcrp.ReasonIDToken: "The provider's answer could not be verified.",
	oidcrp.ReasonNonce:   "The provider's answer belongs to another sign-in.",
}

// providerError answers a provider sign-in that cannot go on with the
// error page: the provider unreachable is a 502 saying so, a refusal of
// ours (an account rule, a limit) as on the forms, an outage a 503.
func (p *Pages) providerError(w http.ResponseWriter, r *http.Request, err error, id *accounts.Identity) error {
	var oe *oidcrp.Error
	if errors.As(err, &oe) {
		if oe.Reason == oidcrp.ReasonUnavailable {
			p.Logger.Warn("provider unavailable", zap.Error(err))
			return p.errorPage(w, r, http.StatusBadGateway, "The provider cannot be reached; try again later.", id)
		}
		p.Logger.Info("provider sign-in refused", zap.Error(err))
		return p.errorPage(w, r, http.StatusBadRequest, providerMessages[oe.Reason], id)
	}
	var ae *accounts.Error
	if errors.As(err, &ae) {
		return p.errorPage(w, r, pageStatus(ae.Code), ae.Description, id)
	}
	var te *accounts.ThrottledError
	if errors.As(err, &te) {
		w.Header().Set("Retry-After", strconv.FormatInt(te.RetrySeconds(), 10))
		return p.errorPage(w, r, http.StatusTooManyRequests, "Too many attempts; try again later.", id)
	}
	return p.Fault(w, r, err, "provider sign-in")
}

// unlinkProvider removes one of the member's linked providers (the
// account page's "Remove"); the last way to sign in stays, with the
// refusal shown on the page.
func (p *Pages) unlinkProvider(w http.ResponseWriter, r *http.Request, d *PageData, id *accounts.Identity) error {
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	err := p.Accounts.UnlinkProvider(ctx, id, r.PostForm.Get("issuer"), r.PostForm.Get("subject"))
	if errors.Is(err, model.ErrNotFound) {
		err = &accounts.Error{Code: accounts.CodeInvalidRequest, Description: "That provider is not linked to this account."}
	}
	if err != nil {
		if lerr := p.loadAccountLists(r, d, id); lerr != nil {
			return p.Fault(w, r, lerr, "listing the account's ways to sign in")
		}
		return p.formError(w, d, err)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, p.Prefix+"account", http.StatusSeeOther)
	return nil
}

// Package pages is guestauth's browser side: the session cookie (set,
// read, cleared, stripped: cookies in one place), the CSRF check, the
// built-in pages (sign-in, sign-up, sign-out, account, continue as a guest,
// error) from overridable templates, and the guest created lazily for a
// browser. The Caddy module builds Pages in Provision, routes the pages'
// prefix to Serve, and asks it for the identity of proxied browser
// requests; the create_guest matchers are the module's (Caddy's).
package pages

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/protocol"
)

//go:embed templates
var builtinTemplates embed.FS

// Page names, each served at the pages prefix + name.
var pageNames = []string{"signin", "signup", "signout", "account", "guest", "error",
	"forgot-password", "reset-password", "email-link", "email-signin", "verify-email"}

// emailPages are the pages of email (accounts.Service.EmailEnabled):
// without it they do not exist.
// adminPages are the dashboard's templates (admin.go), served only to
// admins.
var adminPages = []string{"admin", "admin-users", "admin-user"}

var emailPages = map[string]bool{"forgot-password": true, "reset-password": true, "email-link": true, "email-signin": true, "verify-email": true}

var pageTitles = map[string]string{ //nolint:gosec // G101: page names and titles, no credentials
	"signin": "Sign in", "signup": "Sign up", "signout": "Sign out",
	"account": "Your account", "guest": "Continue as a guest",
	"forgot-password": "Forgot password", "reset-password": "Choose a new password",
	"email-link": "Email me a sign-in link", "email-signin": "Sign in with your link",
	"verify-email": "Confirm your email address",
}

// Pages serves the pages and keeps the session cookie. Its fields are set
// once, in the module's Provision, and only read afterwards.
type Pages struct {
	Accounts *accounts.Service
	// Prefix is the pages' path prefix, ending in "/".
	Prefix string
	// CookieName is the session cookie's name (__Host- is prepended when
	// it is Secure).
	CookieName string
	// CookieSecure is when the cookie is Secure, with the __Host- prefix:
	// SecureAlways, SecureNever, or SecureAuto ("" too) when the site is
	// HTTPS (see secure); SecureIssuer says the configured issuer is an
	// https URL.
	CookieSecure string
	SecureIssuer bool
	Templates    *Templates
	// SiteName names the site on every page ("": the request's host
	// name); Home is the app's address, linked from every page and where
	// a deleted account's browser lands.
	SiteName, Home string
	// Issuer is the issuer for r; ClientIP the client's address as events
	// report it; LimitKey the key of the per-IP limits for r.
	Issuer, ClientIP, LimitKey func(r *http.Request) string
	// ReadTimeout bounds the reading of a form (api_read_timeout).
	ReadTimeout time.Duration
	// FormActions are CSP sources (scheme://host[:port], or scheme: for
	// an app's own scheme) the pages' forms may end at after redirects:
	// where the authorization and end-session endpoints send visitors
	// back (protocol.RedirectSources).
	FormActions []string
	// Providers are the other providers to sign in with (providers.go).
	Providers []Provider
	Logger    *zap.Logger
	Now       func() time.Time
	// Passkeys, when set, serves passkeys (passkeys.go).
	Passkeys *accounts.Passkeys
	// Admins are the usernames (model.NameKey) of the members who may
	// open the dashboard (admin.go), read from AdminStore; GuestTTL is
	// the guest idle TTL its idle count is measured against.
	Admins     []string
	AdminStore AdminStore
	GuestTTL   time.Duration
}

// Pages is the browser side of the authorization and end-session
// endpoints (oidc.go).
var _ protocol.Browser = (*Pages)(nil)

// Templates is the parsed templates and stylesheets of the pages.
type Templates struct {
	tmpl    map[string]*template.Template
	css     []byte // built-in stylesheet
	siteCSS []byte // the site owner's, when the templates directory has one
}

// Load parses the built-in templates, each overridden by the file of the
// same name in dir when dir is set and has one.
func Load(dir string) (*Templates, error) {
	var owner fs.FS
	if dir != "" {
		owner = os.DirFS(dir) // names below are fixed: nothing outside dir is read
	}
	read := func(name string) ([]byte, error) {
		if owner != nil {
			b, err := fs.ReadFile(owner, name)
			if err == nil {
				return b, nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return nil, err
			}
		}
		return builtinTemplates.ReadFile("templates/" + name)
	}
	ps := &Templates{tmpl: map[string]*template.Template{}}
	layout, err := read("layout.html")
	if err != nil {
		return nil, err
	}
	for _, name := range append(slices.Clone(pageNames), adminPages...) {
		body, err := read(name + ".html")
		if err != nil {
			return nil, err
		}
		t, err := template.New("layout").Funcs(templateFuncs).Parse(string(layout))
		if err == nil {
			_, err = t.New(name).Parse(string(body))
		}
		if err != nil {
			return nil, fmt.Errorf("%s.html: %w", name, err)
		}
		ps.tmpl[name] = t
	}
	if ps.css, err = builtinTemplates.ReadFile("templates/style.css"); err != nil {
		return nil, err
	}
	if owner != nil {
		b, err := fs.ReadFile(owner, "style.css")
		switch {
		case err == nil:
			ps.siteCSS = b
		case !errors.Is(err, fs.ErrNotExist):
			return nil, err
		}
	}
	return ps, nil
}

// PageData is what every page template gets (documented for site owners
// overriding templates).
type PageData struct {
	// Page is the page's name (signin, signup, signout, account, guest,
	// error); Title its heading.
	Page, Title string
	// SiteName names the site (the `site_name` option, else the host);
	// Home is the app's address (`home`, default /).
	SiteName, Home string
	// Prefix is the pages' path prefix, such as /auth/.
	Prefix string
	// ReturnTo is where the visitor goes after success: a same-origin
	// path, "/" otherwise.
	ReturnTo string
	// Continue is the path the visitor was sent from (ReturnTo's path,
	// percent-encoded and shortened), shown on sign-in and sign-up as why
	// they ask for an account; "" when ReturnTo is "/".
	Continue string
	// Action is the form the visitor sent (the account page's username,
	// password or delete), "" for none.
	Action string
	// Error is the message of a refused form that belongs to no one
	// field; Invalid the refusals of fields (FieldError finds a field's),
	// each shown next to its field. The form is shown again refilled.
	// Message is a confirmation (the account page's).
	Error, Message string
	Invalid        []FieldError
	// Status is the HTTP status of the answer.
	Status int
	// User is the signed-in visitor, nil without a session.
	User *PageUser
	// Form holds the submitted values shown again (never a password).
	Form struct{ Username, Email string }
	// Email is set when the site sends mail: the email fields and pages
	// are shown only then.
	Email bool
	// Token is the mailed link's token, carried by the reset, verify and
	// sign-in link pages' forms.
	Token string
	// Rules are the username and password rules, stated on the forms
	// before they are sent.
	Rules Rules
	// SiteCSS is set when the templates directory has a style.css, served
	// at Prefix + "site.css".
	SiteCSS bool
	// Providers are the other providers to sign in with, one "Continue
	// with" link each (Prefix + "provider/" + Name + "/start"); Links the
	// signed-in member's linked provider accounts (the account page's).
	Providers []ProviderButton
	Links     []PageLink
	// Passkeys is set when the site has passkeys: the pages offer them,
	// with the script Prefix + "passkeys.js". PasskeyList is the account
	// page's list of the user's passkeys.
	Passkeys    bool
	PasskeyList []PagePasskey
	// Admin is the admin pages' data (admin, admin-users, admin-user),
	// nil on the other pages.
	Admin *AdminData
}

// FieldError is the refusal of one form field: ID is the field's id
// (username, password, current_password, current_password_name,
// delete_password, delete_confirm).
type FieldError struct{ ID, Message string }

// FieldError is the message of the field with this id, "" when it is
// fine.
func (d *PageData) FieldError(id string) string {
	for _, f := range d.Invalid {
		if f.ID == id {
			return f.Message
		}
	}
	return ""
}

// Rules are the account rules the forms state (internal/accounts' limits).
type Rules struct {
	MinName, MaxName, MinPassword, MaxPassword int
	// NameCharacters is which characters a username may use.
	NameCharacters string
}

var accountRules = Rules{
	MinName: accounts.MinNameLength, MaxName: accounts.MaxNameLength,
	MinPassword: accounts.MinPasswordLength, MaxPassword: accounts.MaxPasswordLength,
	NameCharacters: accounts.NameCharacters,
}

// PageUser is the signed-in visitor as the pages show it.
type PageUser struct {
	ID, Name, Tag string
	// Display names the user: the username, or for a guest "Guest" and
	// the last 8 characters of its id (random in a UUIDv7; its first ones
	// are the creation time, shared by the guests of the same minute).
	Display                string
	Anonymous, HasPassword bool
	// Email is the user's address (EmailVerified once its link was opened).
	Email         string
	EmailVerified bool
}

// csp is the pages' Content-Security-Policy: nothing but this origin's
// stylesheets and form targets; no script at all, no framing. A form's
// target is this origin, and FormActions: browsers apply form-action to
// every redirect that follows a form's submission too (Chromium does), and
// a sign-in through the authorization endpoint ends in a redirect to the
// app.
func (p *Pages) csp() string {
	actions := "'self'"
	for _, src := range p.FormActions {
		actions += " " + src
	}
	script := ""
	if p.Passkeys != nil {
		// passkeys.js, same-origin, and its calls to the pages' endpoints.
		script = "script-src 'self'; connect-src 'self'; "
	}
	return "default-src 'none'; " + script + "style-src 'self'; img-src 'self'; form-action " + actions + "; frame-ancestors 'none'; base-uri 'none'"
}

const maxPageForm = 16 << 10

// Serve serves the pages under the prefix.
func (p *Pages) Serve(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimPrefix(r.URL.Path, p.Prefix)
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	switch name {
	case "style.css", "site.css":
		css := p.Templates.css
		if name == "site.css" {
			css = p.Templates.siteCSS
		}
		if css == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
			http.NotFound(w, r)
			return nil
		}
		h.Set("Content-Type", "text/css; charset=utf-8")
		h.Set("Cache-Control", "public, max-age=300")
		_, err := w.Write(css)
		return err
	}
	if ok, err := p.servePasskeys(w, r, name); ok {
		return err
	}
	h.Set("Content-Security-Policy", p.csp())
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if name == "admin" || strings.HasPrefix(name, "admin/") {
		return p.serveAdmin(w, r, name)
	}
	if rest, ok := strings.CutPrefix(name, "provider/"); ok && len(p.Providers) > 0 {
		return p.serveProvider(w, r, rest)
	}
	if _, ok := pageTitles[name]; !ok || emailPages[name] && !p.Accounts.EmailEnabled() {
		// Shown with the visitor's real session state: reading it changes
		// nothing (but a slid session's renewed cookie).
		id, err := p.Identity(w, r)
		if err != nil {
			return p.Fault(w, r, err, "authenticating browser session")
		}
		return p.errorPage(w, r, http.StatusNotFound, "There is no such page.", id)
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		// CSRF: Go's cross-origin protection (Sec-Fetch-Site, else Origin
		// against Host) on every unsafe request; see the README.
		if err := crossOrigin.Check(r); err != nil {
			return p.Error(w, r, http.StatusForbidden, "This form was sent from another site and was refused.")
		}
		protocol.SetReadDeadline(w, p.ReadTimeout, p.Logger)
		r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
		if err := r.ParseForm(); err != nil {
			return p.Error(w, r, http.StatusBadRequest, "The form could not be read.")
		}
	default:
		h.Set("Allow", "GET, HEAD, POST")
		return p.Error(w, r, http.StatusMethodNotAllowed, "This method is not allowed here.")
	}
	id, err := p.Identity(w, r)
	if err != nil {
		// A store out of reach is a 503 page, never a visitor without a
		// session.
		return p.Fault(w, r, err, "authenticating browser session")
	}
	d := p.pageData(r, name, id)
	if r.Method == http.MethodPost {
		return p.postPage(w, r, d, id)
	}
	if name == "account" && id == nil {
		return p.Redirect(w, r, "signin")
	}
	if name == "account" {
		if err := p.loadAccountLists(r, d, id); err != nil {
			return p.Fault(w, r, err, "listing the account's ways to sign in")
		}
	}
	if name == "reset-password" {
		// Only checked, not taken: the link is taken with the new password.
		if err := p.Accounts.ResetLink(r.Context(), d.Token); err != nil {
			return p.linkError(w, r, err, id)
		}
	}
	return p.render(w, d)
}

func (p *Pages) pageData(r *http.Request, name string, id *accounts.Identity) *PageData {
	ret := r.URL.Query().Get("return_to")
	if r.Method == http.MethodPost {
		ret = r.PostForm.Get("return_to")
	}
	d := p.newPageData(r, name, pageTitles[name], http.StatusOK)
	d.ReturnTo = safeReturn(ret)
	if name == "signin" || name == "signup" {
		d.Continue = continuePath(d.ReturnTo)
	}
	if hint := r.URL.Query().Get("login_hint"); r.Method != http.MethodPost && accounts.ValidateName(hint) == nil {
		// The authorization endpoint passes a client's login_hint on.
		d.Form.Username = hint
	}
	d.setUser(id)
	d.Email = p.Accounts.EmailEnabled()
	d.Providers = p.providerButtons()
	d.Passkeys = p.Passkeys != nil
	if emailPages[name] {
		if r.Method == http.MethodPost {
			d.Token = r.PostForm.Get("token")
		} else {
			d.Token = r.URL.Query().Get("token")
		}
	}
	return d
}

// newPageData is what every page has: the site, the prefix, the rules.
func (p *Pages) newPageData(r *http.Request, name, title string, status int) *PageData {
	site := p.SiteName
	if site == "" {
		site = hostName(r.Host)
	}
	return &PageData{
		Page: name, Title: title, SiteName: site, Home: p.home(), Prefix: p.Prefix,
		ReturnTo: "/", Status: status, Rules: accountRules, SiteCSS: p.Templates.siteCSS != nil,
	}
}

func (p *Pages) home() string {
	if p.Home == "" {
		return "/"
	}
	return p.Home
}

// hostName is host without its port (and an IPv6 address without its
// brackets).
func hostName(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

// maxContinue bounds the path a page shows as where the visitor was going.
const maxContinue = 60

// continuePath is the path of ret (a safeReturn result) as a page shows it:
// percent-encoded (so no text can pass for the page's own words), without
// the query, shortened; "" for "/".
func continuePath(ret string) string {
	u, err := url.Parse(ret)
	if err != nil {
		return ""
	}
	path := u.EscapedPath()
	if path == "" || path == "/" {
		return ""
	}
	if len(path) > maxContinue {
		cut := maxContinue - 1
		if i := strings.LastIndexByte(path[cut-2:cut], '%'); i >= 0 {
			cut = cut - 2 + i // not within a %XX
		}
		path = path[:cut] + "…"
	}
	return path
}

func (d *PageData) setUser(id *accounts.Identity) {
	d.User = nil
	if id != nil {
		u := id.User
		d.User = &PageUser{ID: u.ID, Name: u.Name, Tag: u.Tag, Display: displayName(u.ID, u.Name, u.IsAnonymous()), Anonymous: u.IsAnonymous(), HasPassword: u.PasswordHash != "",
			Email: u.Email, EmailVerified: u.EmailVerified}
	}
}

// displayName is how the pages name a user (see PageUser.Display).
func displayName(id, name string, anonymous bool) string {
	if !anonymous {
		return name
	}
	short := strings.ReplaceAll(id, "-", "")
	if len(short) > 8 {
		short = short[len(short)-8:]
	}
	return "Guest " + short
}

// postPage handles a form; the request already passed the CSRF check.
func (p *Pages) postPage(w http.ResponseWriter, r *http.Request, d *PageData, id *accounts.Identity) error {
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	form := r.PostForm
	d.Form.Username = form.Get("username")
	d.Action = form.Get("action")
	ip := p.LimitKey(r)
	switch d.Page {
	case "guest":
		if id == nil {
			if _, err := p.createGuest(w, r); err != nil {
				return p.formError(w, d, err)
			}
		}
	case "signout":
		if id != nil {
			if err := p.Accounts.EndBrowserSession(ctx, id); err != nil {
				return p.formError(w, d, err)
			}
		}
		p.clearSession(w, r)
	case "signin":
		// A new session replaces the browser's (a guest's is merged).
		login, err := p.Accounts.BrowserSignIn(ctx, id, p.Issuer(r), form.Get("username"), form.Get("password"), ip)
		if err != nil {
			return p.formError(w, d, err)
		}
		p.setSession(w, r, login)
	case "signup":
		d.Form.Email = form.Get("email")
		addr := strings.TrimSpace(d.Form.Email)
		if id == nil || id.User.IsAnonymous() {
			// Every field's fault at once, before any store work.
			err := p.Accounts.CheckNewAccount(form.Get("username"), form.Get("password"))
			if d.Email && addr != "" {
				if _, eerr := accounts.NormalizeEmail(addr); eerr != nil {
					err = joinFieldErrors(err, eerr)
				}
			}
			if err != nil {
				return p.formError(w, d, err)
			}
		}
		var now *accounts.Identity
		switch {
		case id == nil:
			login, err := p.Accounts.RegisterBrowser(ctx, p.Issuer(r), form.Get("username"), form.Get("password"), ip)
			if err != nil {
				return p.formError(w, d, err)
			}
			p.setSession(w, r, login)
			now = &accounts.Identity{User: login.User, Session: login.Session}
		case id.User.IsAnonymous():
			name, pw := form.Get("username"), form.Get("password")
			login, _, err := p.Accounts.UpdateBrowserProfile(ctx, id, accounts.ProfileUpdate{Name: &name, Password: &pw, ClientIP: ip, Issuer: p.Issuer(r)})
			if login != nil {
				p.setSession(w, r, login)
				now = &accounts.Identity{User: login.User, Session: login.Session}
			}
			if err != nil {
				return p.formError(w, d, err)
			}
		}
		if now != nil && d.Email && addr != "" {
			// The account exists: a refused mail (a limit, an outage) is
			// said on the account page, where the address can be sent again.
			if _, err := p.Accounts.SetEmail(ctx, now, accounts.SetEmailRequest{Email: addr, LinkBase: p.LinkBase(r), ClientIP: ip}); err != nil {
				d.ReturnTo = p.Prefix + "account"
				p.Logger.Info("sign-up: the confirmation mail was not queued", zap.Error(err))
			}
		}
	case "forgot-password", "email-link":
		d.Form.Email = form.Get("email")
		req := accounts.EmailLinkRequest{Email: d.Form.Email, LinkBase: p.LinkBase(r), ClientIP: ip}
		var err error
		if d.Page == "forgot-password" {
			err = p.Accounts.ForgotPassword(ctx, req)
		} else {
			err = p.Accounts.RequestSignInLink(ctx, req)
		}
		if err != nil {
			return p.formError(w, d, err)
		}
		// The same answer whether or not the address has an account.
		d.Form.Email = ""
		d.Message = "If an account has this verified address, a link is on its way to it."
		return p.render(w, d)
	case "reset-password":
		login, err := p.Accounts.ResetPassword(ctx, id, accounts.ResetRequest{Handle: d.Token, Password: form.Get("password"), Issuer: p.Issuer(r), ClientIP: ip})
		if err != nil {
			var e *accounts.Error
			if errors.As(err, &e) && e.Code == accounts.CodeInvalidGrant {
				return p.linkError(w, r, err, id)
			}
			return p.formError(w, d, err)
		}
		p.setSession(w, r, login)
	case "email-signin":
		login, err := p.Accounts.SignInWithLink(ctx, id, d.Token, p.Issuer(r))
		if err != nil {
			return p.linkError(w, r, err, id)
		}
		p.setSession(w, r, login)
	case "verify-email":
		u, login, err := p.Accounts.VerifyEmail(ctx, id, d.Token, p.Issuer(r))
		if login != nil {
			p.setSession(w, r, login)
			id = &accounts.Identity{User: login.User, Session: login.Session}
		}
		if err != nil {
			return p.linkError(w, r, err, id)
		}
		if id != nil && id.User.ID == u.ID {
			id = &accounts.Identity{User: u, Session: id.Session}
		}
		d.setUser(id)
		d.Message = "Your email address " + u.Email + " is confirmed."
		return p.render(w, d)
	case "account":
		if id == nil {
			return p.Redirect(w, r, "signin")
		}
		if d.Action != "unlink" && d.Action != "passkey_rename" && d.Action != "passkey_remove" {
			// Any answer but a redirect shows the account page again (a
			// refused form, a message): with its lists, as on GET. Those
			// three load them themselves.
			if err := p.loadAccountLists(r, d, id); err != nil {
				return p.Fault(w, r, err, "listing the account's ways to sign in")
			}
		}
		if d.Action == "delete" {
			return p.deleteAccount(w, r, d, id)
		}
		if d.Action == "unlink" {
			return p.unlinkProvider(w, r, d, id)
		}
		if d.Action == "passkey_rename" || d.Action == "passkey_remove" {
			return p.passkeyAction(w, r, d, id)
		}
		upd := accounts.ProfileUpdate{ClientIP: ip, Issuer: p.Issuer(r)}
		if cur := form.Get("current_password"); cur != "" {
			upd.OldPassword = &cur
		}
		switch form.Get("action") {
		case "email":
			d.Form.Email = form.Get("email")
			if !d.Email {
				return p.formError(w, d, &accounts.Error{Code: accounts.CodeNoEmail, Description: "Email is not configured on this site."})
			}
			u, err := p.Accounts.SetEmail(ctx, id, accounts.SetEmailRequest{Email: d.Form.Email, LinkBase: p.LinkBase(r), ClientIP: ip})
			if err != nil {
				return p.formError(w, d, err)
			}
			d.setUser(&accounts.Identity{User: u, Session: id.Session})
			d.Form.Email = ""
			if u.EmailVerified {
				d.Message = "This address is already confirmed."
			} else {
				d.Message = "We mailed a confirmation link to " + u.Email + "."
			}
			return p.render(w, d)
		case "username":
			name := form.Get("username")
			upd.Name = &name
		case "password":
			pw := form.Get("password")
			upd.Password = &pw
			d.Form.Username = ""
		default:
			return p.formError(w, d, &accounts.Error{Code: accounts.CodeInvalidRequest, Description: "Choose what to change."})
		}
		if err := p.updateProfile(w, r, id, upd); err != nil {
			return p.formError(w, d, err)
		}
		d.ReturnTo = p.Prefix + "account"
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, d.ReturnTo, http.StatusSeeOther) //nolint:gosec // G710: ReturnTo passed safeReturn (a same-origin path)
	return nil
}

// updateProfile applies upd to the browser's user; a change raising its
// privilege gives the browser a new session (accounts.UpdateBrowserProfile),
// whose cookie is set whether or not the update then succeeded.
func (p *Pages) updateProfile(w http.ResponseWriter, r *http.Request, id *accounts.Identity, upd accounts.ProfileUpdate) error {
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	login, _, err := p.Accounts.UpdateBrowserProfile(ctx, id, upd)
	if login != nil {
		p.setSession(w, r, login)
	}
	return err
}

// deleteAccount deletes the visitor's account (the account page's delete
// form): with its password when it has one, else with the confirmation
// box ticked. The browser then goes to the app as a new visitor: the
// cookie cleared, no guest made on this answer.
func (p *Pages) deleteAccount(w http.ResponseWriter, r *http.Request, d *PageData, id *accounts.Identity) error {
	form := r.PostForm
	d.Form.Username = "" // the delete form's name is for password managers
	if id.User.PasswordHash == "" && form.Get("confirm") != "yes" {
		d.Status = http.StatusBadRequest
		d.Invalid = []FieldError{{ID: "delete_confirm", Message: "Tick the box to confirm that the account is to be deleted."}}
		return p.render(w, d)
	}
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	if err := p.Accounts.DeleteAccount(ctx, id, form.Get("current_password"), p.LimitKey(r)); err != nil {
		return p.formError(w, d, err)
	}
	p.clearSession(w, r)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, p.home(), http.StatusSeeOther)
	return nil
}

// fieldOf is the id of the field a refusal (its code) is about on the form
// d was sent from, "" when it is about no one field. A failed sign-in names
// none: it must not say whether the name or the password was wrong.
func fieldOf(d *PageData, code string) string {
	switch d.Page + "/" + d.Action + "/" + code {
	case "signup//" + accounts.CodeInvalidName, "signup//" + accounts.CodeNameTaken,
		"account/username/" + accounts.CodeInvalidName, "account/username/" + accounts.CodeNameTaken:
		return "username"
	case "signup//" + accounts.CodeInvalidPassword, "account/password/" + accounts.CodeInvalidPassword:
		return "password"
	case "account/username/" + accounts.CodeWrongPassword:
		return "current_password_name"
	case "account/password/" + accounts.CodeWrongPassword:
		return "current_password"
	case "account/delete/" + accounts.CodeWrongPassword:
		return "delete_password"
	case "signup//" + accounts.CodeInvalidEmail, "account/email/" + accounts.CodeInvalidEmail,
		"forgot-password//" + accounts.CodeInvalidEmail, "email-link//" + accounts.CodeInvalidEmail:
		return "email"
	case "reset-password//" + accounts.CodeInvalidPassword:
		return "password"
	}
	return ""
}

// pageStatus is the HTTP status of a refused form: update-user's
// (protocol.AccountStatus), except that a failed sign-in (invalid_grant) is
// a 400, as a form answer carries no WWW-Authenticate challenge.
func pageStatus(code string) int {
	if code == accounts.CodeInvalidGrant {
		return http.StatusBadRequest
	}
	return protocol.AccountStatus(code)
}

// formError shows the page again with the refusal, the form refilled
// (never a password).
func (p *Pages) formError(w http.ResponseWriter, d *PageData, err error) error {
	// The one classification of protocol.Classify; the page shows it in HTML.
	switch f := protocol.Classify(p.Logger, err, "browser page "+d.Page); f.Kind {
	case protocol.FailGone:
		w.WriteHeader(f.Status)
		return nil
	case protocol.FailThrottled:
		protocol.SetRetryAfter(w, f)
		d.Status, d.Error = f.Status, "Too many attempts; try again in "+strconv.FormatInt(f.Retry, 10)+" seconds."
	case protocol.FailUnavailable:
		protocol.SetRetryAfter(w, f)
		d.Status, d.Error = f.Status, f.Desc
	case protocol.FailDomain:
		d.Status = pageStatus(f.Code)
		var all accounts.FieldErrors
		if !errors.As(err, &all) {
			all = accounts.FieldErrors{{Code: f.Code, Description: f.Desc}}
		}
		for _, e := range all {
			if id := fieldOf(d, e.Code); id != "" {
				d.Invalid = append(d.Invalid, FieldError{ID: id, Message: e.Description})
			} else {
				d.Error = e.Description
			}
		}
	case protocol.FailHTTP, protocol.FailToken, protocol.FailAuth:
		d.Status, d.Error = f.Status, f.Desc
	default:
		d.Status, d.Error = http.StatusInternalServerError, "Something went wrong; try again."
	}
	return p.render(w, d)
}

// linkError answers a mailed link that cannot be used (unknown, expired,
// used, for an address since changed) with the error page, saying which;
// an outage is a 503 as anywhere.
func (p *Pages) linkError(w http.ResponseWriter, r *http.Request, err error, id *accounts.Identity) error {
	var e *accounts.Error
	if errors.As(err, &e) {
		return p.errorPage(w, r, pageStatus(e.Code), e.Description, id)
	}
	return p.Fault(w, r, err, "using a mailed link")
}

// LinkBase is where the mailed links point: the issuer's origin and the
// pages' prefix.
func (p *Pages) LinkBase(r *http.Request) string {
	u, err := url.Parse(p.Issuer(r))
	if err != nil || u.Host == "" {
		return p.Prefix
	}
	return u.Scheme + "://" + u.Host + p.Prefix
}

// joinFieldErrors is a and b as one refusal of several fields.
func joinFieldErrors(a, b error) error {
	if a == nil {
		return b
	}
	var all accounts.FieldErrors
	if !errors.As(a, &all) {
		var e *accounts.Error
		if !errors.As(a, &e) {
			return a
		}
		all = accounts.FieldErrors{e}
	}
	var e *accounts.Error
	if errors.As(b, &e) {
		all = append(all, e)
	}
	return all
}

// Error answers with the error page.
func (p *Pages) Error(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	return p.errorPage(w, r, status, msg, nil)
}

// errorPage is the error page, showing id's session state when known.
func (p *Pages) errorPage(w http.ResponseWriter, r *http.Request, status int, msg string, id *accounts.Identity) error {
	h := w.Header()
	h.Set("Content-Security-Policy", p.csp())
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	d := p.newPageData(r, "error", http.StatusText(status), status)
	d.Error = msg
	d.setUser(id)
	return p.render(w, d)
}

func (p *Pages) render(w http.ResponseWriter, d *PageData) error {
	var buf bytes.Buffer
	if err := p.Templates.tmpl[d.Page].ExecuteTemplate(&buf, "layout", d); err != nil {
		p.Logger.Error("rendering page", zap.String("page", d.Page), zap.Error(err))
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(d.Status)
	_, err := w.Write(buf.Bytes())
	return err
}

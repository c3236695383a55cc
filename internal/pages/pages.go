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
	"net/http"
	"os"
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
var pageNames = []string{"signin", "signup", "signout", "account", "guest", "error"}

var pageTitles = map[string]string{
	"signin": "Sign in", "signup": "Sign up", "signout": "Sign out",
	"account": "Your account", "guest": "Continue as a guest",
}

// Pages serves the pages and keeps the session cookie. Its fields are set
// once, in the module's Provision, and only read afterwards.
type Pages struct {
	Accounts *accounts.Service
	// Prefix is the pages' path prefix, ending in "/".
	Prefix string
	// CookieName is the session cookie's name (__Host- is prepended on
	// HTTPS).
	CookieName string
	Templates  *Templates
	// Issuer is the issuer for r; ClientIP the client's address as events
	// report it; LimitKey the key of the per-IP limits for r.
	Issuer, ClientIP, LimitKey func(r *http.Request) string
	// ReadTimeout bounds the reading of a form (api_read_timeout).
	ReadTimeout time.Duration
	Logger      *zap.Logger
	Now         func() time.Time
}

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
	for _, name := range pageNames {
		body, err := read(name + ".html")
		if err != nil {
			return nil, err
		}
		t, err := template.New("layout").Parse(string(layout))
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
	// Prefix is the pages' path prefix, such as /auth/.
	Prefix string
	// ReturnTo is where the visitor goes after success: a same-origin
	// path, "/" otherwise.
	ReturnTo string
	// Error is the message of a refused form (shown with the form
	// refilled); Message a confirmation (the account page's).
	Error, Message string
	// Status is the HTTP status of the answer.
	Status int
	// User is the signed-in visitor, nil without a session.
	User *PageUser
	// Form holds the submitted values shown again (never a password).
	Form struct{ Username string }
	// SiteCSS is set when the templates directory has a style.css, served
	// at Prefix + "site.css".
	SiteCSS bool
}

// PageUser is the signed-in visitor as the pages show it.
type PageUser struct {
	ID, Name, Tag          string
	Anonymous, HasPassword bool
}

// pageCSP: nothing but this origin's stylesheets and form targets; no
// script at all, no framing.
const pageCSP = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

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
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if _, ok := pageTitles[name]; !ok {
		return p.Error(w, r, http.StatusNotFound, "There is no such page.")
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
		p.Logger.Error("authenticating browser session", zap.Error(err))
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	d := p.pageData(r, name, id)
	if r.Method == http.MethodPost {
		return p.postPage(w, r, d, id)
	}
	if name == "account" && id == nil {
		return p.Redirect(w, r, "signin")
	}
	return p.render(w, d)
}

func (p *Pages) pageData(r *http.Request, name string, id *accounts.Identity) *PageData {
	ret := r.URL.Query().Get("return_to")
	if r.Method == http.MethodPost {
		ret = r.PostForm.Get("return_to")
	}
	d := &PageData{
		Page: name, Title: pageTitles[name], Prefix: p.Prefix,
		ReturnTo: safeReturn(ret), Status: http.StatusOK, SiteCSS: p.Templates.siteCSS != nil,
	}
	if hint := r.URL.Query().Get("login_hint"); r.Method != http.MethodPost && accounts.ValidateName(hint) == nil {
		// The authorization endpoint passes a client's login_hint on.
		d.Form.Username = hint
	}
	d.setUser(id)
	return d
}

func (d *PageData) setUser(id *accounts.Identity) {
	d.User = nil
	if id != nil {
		u := id.User
		d.User = &PageUser{ID: u.ID, Name: u.Name, Tag: u.Tag, Anonymous: u.IsAnonymous(), HasPassword: u.PasswordHash != ""}
	}
}

// postPage handles a form; the request already passed the CSRF check.
func (p *Pages) postPage(w http.ResponseWriter, r *http.Request, d *PageData, id *accounts.Identity) error {
	ctx := accounts.WithClientIP(r.Context(), p.ClientIP(r))
	form := r.PostForm
	d.Form.Username = form.Get("username")
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
		login, err := p.Accounts.BrowserSignIn(ctx, form.Get("username"), form.Get("password"), ip)
		if err != nil {
			return p.formError(w, d, err)
		}
		if id != nil {
			// The browser's previous session ends: one session per browser.
			if _, err := p.Accounts.ReplaceBrowserSession(ctx, id, login); err != nil {
				p.Logger.Error("ending the previous browser session", zap.Error(err))
			}
		}
		p.setSession(w, r, login)
	case "signup":
		switch {
		case id == nil:
			login, err := p.Accounts.RegisterBrowser(ctx, form.Get("username"), form.Get("password"), ip)
			if err != nil {
				return p.formError(w, d, err)
			}
			p.setSession(w, r, login)
		case id.User.IsAnonymous():
			name, pw := form.Get("username"), form.Get("password")
			if _, err := p.Accounts.UpdateProfile(ctx, id, accounts.ProfileUpdate{Name: &name, Password: &pw, ClientIP: ip, Issuer: p.Issuer(r)}); err != nil {
				return p.formError(w, d, err)
			}
		}
	case "account":
		if id == nil {
			return p.Redirect(w, r, "signin")
		}
		upd := accounts.ProfileUpdate{ClientIP: ip, Issuer: p.Issuer(r)}
		if cur := form.Get("current_password"); cur != "" {
			upd.OldPassword = &cur
		}
		switch form.Get("action") {
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
		if _, err := p.Accounts.UpdateProfile(ctx, id, upd); err != nil {
			return p.formError(w, d, err)
		}
		d.ReturnTo = p.Prefix + "account"
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, d.ReturnTo, http.StatusSeeOther) //nolint:gosec // G710: ReturnTo passed safeReturn (a same-origin path)
	return nil
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
		d.Status, d.Error = pageStatus(f.Code), f.Desc
	case protocol.FailHTTP, protocol.FailToken, protocol.FailAuth:
		d.Status, d.Error = f.Status, f.Desc
	default:
		d.Status, d.Error = http.StatusInternalServerError, "Something went wrong; try again."
	}
	return p.render(w, d)
}

// Error answers with the error page.
func (p *Pages) Error(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	d := &PageData{
		Page: "error", Title: http.StatusText(status), Prefix: p.Prefix,
		ReturnTo: "/", Error: msg, Status: status, SiteCSS: p.Templates.siteCSS != nil,
	}
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

package caddymodule

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

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
)

//go:embed templates
var builtinTemplates embed.FS

// Page names, each served at the pages prefix + name.
var pageNames = []string{"signin", "signup", "signout", "account", "guest", "error"}

var pageTitles = map[string]string{
	"signin": "Sign in", "signup": "Sign up", "signout": "Sign out",
	"account": "Your account", "guest": "Continue as a guest",
}

// pageSet is the parsed templates and stylesheets of the pages.
type pageSet struct {
	tmpl    map[string]*template.Template
	css     []byte // built-in stylesheet
	siteCSS []byte // the site owner's, when the templates directory has one
}

// loadPages parses the built-in templates, each overridden by the file of
// the same name in dir when dir is set and has one.
func loadPages(dir string) (*pageSet, error) {
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
	ps := &pageSet{tmpl: map[string]*template.Template{}}
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

// servePage serves the pages under the prefix.
func (g *GuestAuth) servePage(w http.ResponseWriter, r *http.Request) error {
	b := g.Browser
	name := strings.TrimPrefix(r.URL.Path, b.PagesPrefix)
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	switch name {
	case "style.css", "site.css":
		css := b.pages.css
		if name == "site.css" {
			css = b.pages.siteCSS
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
		return g.pageError(w, r, http.StatusNotFound, "There is no such page.")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPost:
		// CSRF: Go's cross-origin protection (Sec-Fetch-Site, else Origin
		// against Host) on every unsafe request; see the README.
		if err := crossOrigin.Check(r); err != nil {
			return g.pageError(w, r, http.StatusForbidden, "This form was sent from another site and was refused.")
		}
		g.setAPIReadDeadline(w)
		r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
		if err := r.ParseForm(); err != nil {
			return g.pageError(w, r, http.StatusBadRequest, "The form could not be read.")
		}
	default:
		h.Set("Allow", "GET, HEAD, POST")
		return g.pageError(w, r, http.StatusMethodNotAllowed, "This method is not allowed here.")
	}
	id, err := g.browserIdentity(w, r)
	if err != nil {
		g.logger.Error("authenticating browser session", zap.Error(err))
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	d := g.pageData(r, name, id)
	if r.Method == http.MethodPost {
		return g.postPage(w, r, d, id)
	}
	if name == "account" && id == nil {
		return g.redirectToPage(w, r, "signin")
	}
	return g.renderPage(w, d)
}

func (g *GuestAuth) pageData(r *http.Request, name string, id *accounts.Identity) *PageData {
	ret := r.URL.Query().Get("return_to")
	if r.Method == http.MethodPost {
		ret = r.PostForm.Get("return_to")
	}
	d := &PageData{
		Page: name, Title: pageTitles[name], Prefix: g.Browser.PagesPrefix,
		ReturnTo: safeReturn(ret), Status: http.StatusOK, SiteCSS: g.Browser.pages.siteCSS != nil,
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
func (g *GuestAuth) postPage(w http.ResponseWriter, r *http.Request, d *PageData, id *accounts.Identity) error {
	ctx := accounts.WithClientIP(r.Context(), clientIP(r))
	form := r.PostForm
	d.Form.Username = form.Get("username")
	ip := g.limitKey(r)
	b := g.Browser
	switch d.Page {
	case "guest":
		if id == nil {
			if _, err := g.createBrowserGuest(w, r); err != nil {
				return g.formError(w, d, err)
			}
		}
	case "signout":
		if id != nil {
			if err := g.svc.EndBrowserSession(ctx, id); err != nil {
				return g.formError(w, d, err)
			}
		}
		b.clearSession(w, r)
	case "signin":
		login, err := g.svc.BrowserSignIn(ctx, form.Get("username"), form.Get("password"), ip)
		if err != nil {
			return g.formError(w, d, err)
		}
		if id != nil {
			// The browser's previous session ends: one session per browser.
			if _, err := g.svc.ReplaceBrowserSession(ctx, id, login); err != nil {
				g.logger.Error("ending the previous browser session", zap.Error(err))
			}
		}
		b.setSession(w, r, login, g.now())
	case "signup":
		switch {
		case id == nil:
			login, err := g.svc.RegisterBrowser(ctx, form.Get("username"), form.Get("password"), ip)
			if err != nil {
				return g.formError(w, d, err)
			}
			b.setSession(w, r, login, g.now())
		case id.User.IsAnonymous():
			name, pw := form.Get("username"), form.Get("password")
			if _, err := g.svc.UpdateProfile(ctx, id, accounts.ProfileUpdate{Name: &name, Password: &pw, ClientIP: ip, Issuer: g.issuerFor(r)}); err != nil {
				return g.formError(w, d, err)
			}
		}
	case "account":
		if id == nil {
			return g.redirectToPage(w, r, "signin")
		}
		upd := accounts.ProfileUpdate{ClientIP: ip, Issuer: g.issuerFor(r)}
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
			return g.formError(w, d, &accounts.Error{Code: accounts.CodeInvalidRequest, Description: "Choose what to change."})
		}
		if _, err := g.svc.UpdateProfile(ctx, id, upd); err != nil {
			return g.formError(w, d, err)
		}
		d.ReturnTo = b.PagesPrefix + "account"
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, d.ReturnTo, http.StatusSeeOther) //nolint:gosec // G710: ReturnTo passed safeReturn (a same-origin path)
	return nil
}

// pageStatus is the HTTP status of a refused form: update-user's
// (profileStatus), except that a failed sign-in (invalid_grant) is a 400,
// as a form answer carries no WWW-Authenticate challenge.
func pageStatus(code string) int {
	if code == accounts.CodeInvalidGrant {
		return http.StatusBadRequest
	}
	if s, ok := profileStatus[code]; ok {
		return s
	}
	return http.StatusBadRequest
}

// formError shows the page again with the refusal, the form refilled
// (never a password).
func (g *GuestAuth) formError(w http.ResponseWriter, d *PageData, err error) error {
	// The one classification of outcomes.go; the page shows it in HTML.
	switch f := g.classify(err, "browser page "+d.Page); f.kind {
	case failGone:
		w.WriteHeader(f.status)
		return nil
	case failThrottled:
		setRetryAfter(w, f)
		d.Status, d.Error = f.status, "Too many attempts; try again in "+strconv.FormatInt(f.retry, 10)+" seconds."
	case failUnavailable:
		setRetryAfter(w, f)
		d.Status, d.Error = f.status, f.desc
	case failDomain:
		d.Status, d.Error = pageStatus(f.code), f.desc
	case failHTTP, failToken, failAuth:
		d.Status, d.Error = f.status, f.desc
	default:
		d.Status, d.Error = http.StatusInternalServerError, "Something went wrong; try again."
	}
	return g.renderPage(w, d)
}

// pageError answers with the error page.
func (g *GuestAuth) pageError(w http.ResponseWriter, r *http.Request, status int, msg string) error {
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	d := &PageData{
		Page: "error", Title: http.StatusText(status), Prefix: g.Browser.PagesPrefix,
		ReturnTo: "/", Error: msg, Status: status, SiteCSS: g.Browser.pages.siteCSS != nil,
	}
	return g.renderPage(w, d)
}

func (g *GuestAuth) renderPage(w http.ResponseWriter, d *PageData) error {
	var buf bytes.Buffer
	if err := g.Browser.pages.tmpl[d.Page].ExecuteTemplate(&buf, "layout", d); err != nil {
		g.logger.Error("rendering page", zap.String("page", d.Page), zap.Error(err))
		return caddyhttp.Error(http.StatusInternalServerError, err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(d.Status)
	_, err := w.Write(buf.Bytes())
	return err
}

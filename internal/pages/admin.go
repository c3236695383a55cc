package pages

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/dashboard"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// The admin dashboard, at Prefix + "admin/": for the members named in
// Admins only; anyone else, guests and visitors without a session
// included, gets the same 404 page as for a page that does not exist.
//
//	GET  admin/?days=30|90         the dashboard: population now, charts and tables
//	GET  admin/users?q=            find a user by id, username or verified email
//	GET  admin/user?id=            a user: record, sessions, linked providers, passkeys
//	POST admin/user  id, action    keep, unkeep, revoke, delete (delete asks
//	                                to confirm first: confirm=yes)
//
// Every POST passes the pages' CSRF check; every action goes through the
// accounts Service's own operation, is logged with the acting admin and
// reported as its event with data.admin (see accounts.WithAdmin).

// AdminStore is what the dashboard reads.
type AdminStore interface {
	dashboard.Store
	GetUser(ctx context.Context, id string) (*model.User, error)
	GetUserByName(ctx context.Context, name string) (*model.User, error)
	FindUsersByName(ctx context.Context, prefix string, limit int) ([]model.User, error)
	GetUserByEmail(ctx context.Context, email string) (*model.User, error)
	ListUserSessions(ctx context.Context, userID string) ([]model.Session, error)
	ListPasskeys(ctx context.Context, userID string) ([]model.Passkey, error)
	ListIdentityLinks(ctx context.Context, userID string) ([]model.IdentityLink, error)
}

// AdminData is what the admin templates get in PageData.Admin.
type AdminData struct {
	// Report is the dashboard (admin page); Charts its charts, Days the
	// days shown (30 or 90), Window the totals over those days.
	Report *dashboard.Report
	Charts []*dashboard.Chart
	Days   int
	Window *dashboard.Window
	// Methods and UpgradedBy are the upgrade methods and the window's
	// upgrades by each, in order.
	Methods []MethodCount
	// Query is the search; Results its users (admin-users page).
	Query   string
	Results []AdminUser
	// User is the user shown (admin-user page), with its Sessions and
	// Passkeys; ConfirmDelete asks to confirm its deletion.
	User          *AdminUser
	Sessions      []AdminSession
	Passkeys      []PagePasskey
	Providers     []model.IdentityLink
	ConfirmDelete bool
}

// MethodCount is one upgrade method's count.
type MethodCount struct {
	Method string
	N      int64
}

// AdminUser is a user as the admin pages show it.
type AdminUser struct {
	ID, Name, DisplayName, Tag, Email string
	EmailVerified, Kept, HasPassword  bool
	Guest, Ephemeral                  bool
	CreatedAt, ActiveAt               time.Time
	Passkeys                          int
}

// AdminSession is one of a user's sessions.
type AdminSession struct {
	ID, ClientID                  string
	CreatedAt, LastUsedAt, EndsAt time.Time
}

func adminUser(u *model.User) AdminUser {
	return AdminUser{ID: u.ID, Name: u.Name, DisplayName: u.DisplayName, Tag: u.Tag, Email: u.Email, EmailVerified: u.EmailVerified,
		Kept: u.Kept, HasPassword: u.PasswordHash != "", Guest: u.IsAnonymous(), Ephemeral: u.Ephemeral(),
		CreatedAt: u.CreatedAt, ActiveAt: u.ActiveAt(), Passkeys: u.Passkeys}
}

var adminTitles = map[string]string{"admin": "Dashboard", "admin-users": "Find a user", "admin-user": "User"}

// isAdmin reports whether id is a member named in Admins.
func (p *Pages) isAdmin(id *accounts.Identity) bool {
	return id != nil && !id.User.IsAnonymous() && len(p.Admins) > 0 && p.AdminStore != nil &&
		slices.Contains(p.Admins, model.NameKey(id.User.Name))
}

// serveAdmin serves the admin pages (name is the path after the prefix,
// "admin" or "admin/...").
func (p *Pages) serveAdmin(w http.ResponseWriter, r *http.Request, name string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, HEAD, POST")
		return p.Error(w, r, http.StatusMethodNotAllowed, "This method is not allowed here.")
	}
	id, err := p.Identity(w, r)
	if err != nil {
		return p.Fault(w, r, err, "authenticating browser session")
	}
	if name == "admin" && p.isAdmin(id) && r.Method != http.MethodPost {
		// The dashboard's address without its slash, for the admin only.
		http.Redirect(w, r, p.Prefix+"admin/", http.StatusSeeOther)
		return nil
	}
	page := map[string]string{"admin/": "admin", "admin/users": "admin-users", "admin/user": "admin-user"}[name]
	if !p.isAdmin(id) || page == "" || (r.Method == http.MethodPost && page != "admin-user") {
		// Exactly the answer to a page that does not exist.
		return p.errorPage(w, r, http.StatusNotFound, "There is no such page.", id)
	}
	ctx := r.Context()
	d := p.newPageData(r, page, adminTitles[page], http.StatusOK)
	d.setUser(id)
	d.Admin = &AdminData{}
	switch page {
	case "admin":
		days := 30
		if r.URL.Query().Get("days") == "90" {
			days = 90
		}
		rep, err := dashboard.Build(ctx, p.AdminStore, p.now(), days, p.GuestTTL)
		if err != nil {
			return p.Fault(w, r, err, "reading the dashboard")
		}
		d.Admin.Report, d.Admin.Charts, d.Admin.Days = rep, rep.Charts(), days
		d.Admin.Window = &rep.Windows[len(rep.Windows)-1]
		for _, m := range dashboard.Methods {
			d.Admin.Methods = append(d.Admin.Methods, MethodCount{m, d.Admin.Window.UpgradedBy[m]})
		}
	case "admin-users":
		q := strings.TrimSpace(r.URL.Query().Get("q"))
		d.Admin.Query = q
		if q != "" {
			users, err := p.findUsers(ctx, q)
			if err != nil {
				return p.Fault(w, r, err, "finding users")
			}
			d.Admin.Results = users
		}
	case "admin-user":
		if r.Method == http.MethodPost {
			if err := crossOrigin.Check(r); err != nil {
				return p.Error(w, r, http.StatusForbidden, "This form was sent from another site and was refused.")
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
			if err := r.ParseForm(); err != nil {
				return p.Error(w, r, http.StatusBadRequest, "The form could not be read.")
			}
			return p.adminAction(w, r, d, id)
		}
		if err := p.loadAdminUser(ctx, d, r.URL.Query().Get("id")); err != nil {
			return p.adminUserError(w, r, err, id)
		}
		switch r.URL.Query().Get("done") {
		case "kept":
			d.Message = "The user is kept: it never expires."
		case "unkept":
			d.Message = "The user is no longer kept: it expires when idle, as guests do."
		case "revoked":
			d.Message = "The user's sessions were ended (" + r.URL.Query().Get("n") + ")."
		}
	}
	return p.render(w, d)
}

func (p *Pages) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// findUsers finds the users whose id, username (case-insensitively) or
// verified email address is q: exact matches, by the store's indexes.
func (p *Pages) findUsers(ctx context.Context, q string) ([]AdminUser, error) {
	var out []AdminUser
	seen := map[string]bool{}
	for _, find := range []func(context.Context, string) (*model.User, error){p.AdminStore.GetUser, p.AdminStore.GetUserByName, p.AdminStore.GetUserByEmail} {
		u, err := find(ctx, q)
		if errors.Is(err, model.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if !seen[u.ID] {
			seen[u.ID] = true
			out = append(out, adminUser(u))
		}
	}
	// Then the names starting with q, from the name index.
	more, err := p.AdminStore.FindUsersByName(ctx, q, searchLimit)
	if err != nil {
		return nil, err
	}
	for i := range more {
		if u := &more[i]; !seen[u.ID] && len(out) < searchLimit {
			seen[u.ID] = true
			out = append(out, adminUser(u))
		}
	}
	return out, nil
}

// searchLimit bounds the users one search lists.
const searchLimit = 50

func (p *Pages) loadAdminUser(ctx context.Context, d *PageData, uid string) error {
	if uid == "" {
		return model.ErrNotFound
	}
	u, err := p.AdminStore.GetUser(ctx, uid)
	if err != nil {
		return err
	}
	au := adminUser(u)
	d.Admin.User = &au
	d.Title = "User " + displayName(u.ID, u.Name, u.IsAnonymous())
	sessions, err := p.AdminStore.ListUserSessions(ctx, uid)
	if err != nil {
		return err
	}
	for _, s := range sessions {
		d.Admin.Sessions = append(d.Admin.Sessions, AdminSession{ID: s.ID, ClientID: s.ClientID, CreatedAt: s.CreatedAt, LastUsedAt: s.LastUsedAt, EndsAt: s.EndsAt()})
	}
	if d.Admin.Providers, err = p.AdminStore.ListIdentityLinks(ctx, uid); err != nil {
		return err
	}
	pks, err := p.AdminStore.ListPasskeys(ctx, uid)
	if err != nil {
		return err
	}
	for _, pk := range pks {
		d.Admin.Passkeys = append(d.Admin.Passkeys, PagePasskey{ID: pk.ID, Name: pk.Name, CreatedAt: pk.CreatedAt, LastUsed: pk.LastUsedAt})
	}
	return nil
}

func (p *Pages) adminUserError(w http.ResponseWriter, r *http.Request, err error, id *accounts.Identity) error {
	if errors.Is(err, model.ErrNotFound) {
		return p.errorPage(w, r, http.StatusNotFound, "There is no such user.", id)
	}
	return p.Fault(w, r, err, "reading a user")
}

// adminAction runs one action on a user, through the Service (which
// reports its event, with the acting admin), logs it, and redirects to
// the user's page (to the dashboard after a deletion).
func (p *Pages) adminAction(w http.ResponseWriter, r *http.Request, d *PageData, id *accounts.Identity) error {
	uid, action := r.PostForm.Get("id"), r.PostForm.Get("action")
	admin := id.User.Name
	ctx := accounts.WithAdmin(r.Context(), admin)
	log := func(extra ...zap.Field) {
		p.Logger.Info("admin action", append([]zap.Field{zap.String("admin", admin), zap.String("admin_id", id.User.ID),
			zap.String("action", action), zap.String("user_id", uid)}, extra...)...)
	}
	back := p.Prefix + "admin/user?" + url.Values{"id": {uid}}.Encode()
	var err error
	switch action {
	case "keep", "unkeep":
		if _, err = p.Accounts.SetKept(ctx, uid, action == "keep", causeDashboard); err == nil {
			log()
			back += "&done=" + map[string]string{"keep": "kept", "unkeep": "unkept"}[action]
		}
	case "revoke":
		var n int
		if n, err = p.Accounts.RevokeUserSessions(ctx, uid, causeDashboard); err == nil {
			log(zap.Int("sessions", n))
			back += "&done=revoked&n=" + strconv.Itoa(n)
		}
	case "delete":
		if r.PostForm.Get("confirm") != "yes" {
			if err := p.loadAdminUser(r.Context(), d, uid); err != nil {
				return p.adminUserError(w, r, err, id)
			}
			d.Admin.ConfirmDelete = true
			return p.render(w, d)
		}
		var u *model.User
		if u, err = p.Accounts.DeleteUser(ctx, uid, causeDashboard); err == nil {
			log(zap.String("name", u.Name))
			back = p.Prefix + "admin/users?" + url.Values{"q": {uid}}.Encode()
		}
	default:
		return p.Error(w, r, http.StatusBadRequest, "Unknown action.")
	}
	if err != nil {
		return p.adminUserError(w, r, err, id)
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, back, http.StatusSeeOther)
	return nil
}

// causeDashboard is the cause of the events of the dashboard's actions.
const causeDashboard = "dashboard"

// templateFuncs are the functions every template may call (the admin
// pages use them).
var templateFuncs = template.FuncMap{
	// utc formats a time in UTC to the minute; "–" for none.
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	// percent formats a ratio.
	"percent": func(v *float64) string {
		if v == nil {
			return "–"
		}
		return strconv.FormatFloat(*v*100, 'f', 1, 64) + " %"
	},
	// duration formats seconds (a float64 or *float64) the way people
	// say them: 45 s, 12 min, 3.5 h, 2.0 days.
	"duration": func(v any) string {
		var s float64
		switch x := v.(type) {
		case float64:
			s = x
		case *float64:
			if x == nil {
				return "–"
			}
			s = *x
		}
		switch {
		case s < 90:
			return strconv.FormatFloat(s, 'f', 0, 64) + " s"
		case s < 90*60:
			return strconv.FormatFloat(s/60, 'f', 0, 64) + " min"
		case s < 36*3600:
			return strconv.FormatFloat(s/3600, 'f', 1, 64) + " h"
		default:
			return strconv.FormatFloat(s/86400, 'f', 1, 64) + " days"
		}
	},
}

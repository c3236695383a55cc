package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI serves guest_auth's management routes on Caddy's admin endpoint
// (local-only by default, `localhost:2019`), with the admin endpoint's usual
// access controls. Requests and answers are JSON; errors are
// `{"error": "<message>"}` with a fitting status.
//
//	GET    /guest_auth/users?tag=&after=&limit=  users in id order, a page at a time
//	GET    /guest_auth/users/<id>                one user
//	DELETE /guest_auth/users/<id>                delete a user, its sessions and device key
//	POST   /guest_auth/users/<id>/keep           mark kept; body {"kept": false} unmarks
//	POST   /guest_auth/users/<id>/revoke         end all the user's sessions
//	POST   /guest_auth/prune?dry_run=true|false  run one guest expiry sweep now
//	GET    /guest_auth/stats                     user, guest and session counts, file size
//	GET    /guest_auth/backup                    a consistent copy of the bbolt file
//
// The user list takes `tag` (`guest-user` or `normal-user`), `limit`
// (default 100, at most 1000) and `after` (the `next` of the previous page;
// `next` is "" on the last page). Users are shown without their password
// hash (`has_password` says whether there is one).
//
// POST keys/rotate makes a new signing key for the config's signing_alg
// (see adminRotateKeys) and answers {"kid": ..., "alg": ...}.
//
// Every route takes `storage=<path>` to choose the bbolt file when the
// running config uses more than one. The prune uses the `guest_ttl` of the
// newest config using the file, as the automatic sweep does. The backup is
// taken from one read transaction while the server keeps serving; it holds
// signing keys and password hashes, so store it as carefully as the file.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.guest_auth",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

const adminBase = "/guest_auth/"

// Routes implements caddy.AdminRouter: Caddy's admin mux hands everything
// under adminBase to adminMux.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: adminBase, Handler: caddy.AdminHandlerFunc(a.serve)}}
}

type adminHandler func(w http.ResponseWriter, r *http.Request, sh *sharedStore, id string) error

// adminMux routes by method and path (the id is the {id} wildcard). A path
// asked for with another method is answered 405 with an Allow header, one
// outside the table 404, both as API errors.
var adminMux = newAdminMux()

func newAdminMux() *http.ServeMux {
	mux := http.NewServeMux()
	for path, methods := range map[string]map[string]adminHandler{
		"/guest_auth/users":             {http.MethodGet: adminListUsers},
		"/guest_auth/users/{id}":        {http.MethodGet: adminShowUser, http.MethodDelete: adminDeleteUser},
		"/guest_auth/users/{id}/keep":   {http.MethodPost: adminKeepUser},
		"/guest_auth/users/{id}/revoke": {http.MethodPost: adminRevokeUser},
		"/guest_auth/prune":             {http.MethodPost: adminPrune},
		"/guest_auth/stats":             {http.MethodGet: adminStats},
		"/guest_auth/backup":            {http.MethodGet: adminBackup},
		"/guest_auth/keys/rotate":       {http.MethodPost: adminRotateKeys},
	} {
		allowed := slices.Sorted(maps.Keys(methods))
		for m, h := range methods {
			mux.HandleFunc(m+" "+path, adminRoute(func(w http.ResponseWriter, r *http.Request) error {
				if r.Method != m { // a GET pattern also matches HEAD
					return methodNotAllowed(w, r, allowed)
				}
				sh, err := adminStore(r.URL.Query().Get("storage"))
				if err != nil {
					return err
				}
				return h(w, r, sh, r.PathValue("id"))
			}))
		}
		// The path without a method: any other method.
		mux.HandleFunc(path, adminRoute(func(w http.ResponseWriter, r *http.Request) error {
			return methodNotAllowed(w, r, allowed)
		}))
	}
	mux.HandleFunc(adminBase, adminRoute(func(_ http.ResponseWriter, r *http.Request) error {
		return apiError(http.StatusNotFound, "no guest_auth admin route at %s", r.URL.Path)
	}))
	return mux
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, allowed []string) error {
	list := strings.Join(allowed, ", ")
	w.Header().Set("Allow", list)
	return apiError(http.StatusMethodNotAllowed, "method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, list)
}

// adminResult carries a route's error out of adminMux to Caddy's admin
// handler, which writes it as the JSON error answer.
type adminResult struct {
	http.ResponseWriter
	err error
}

// adminRoute adapts a route returning an error to adminMux.
func adminRoute(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res := w.(*adminResult)
		res.err = h(res.ResponseWriter, r)
	}
}

func (a *AdminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	res := &adminResult{ResponseWriter: w}
	adminMux.ServeHTTP(res, r)
	return res.err
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// storeError maps a store failure to a status.
func storeError(err error, id string) error {
	if errors.Is(err, model.ErrNotFound) {
		return apiError(http.StatusNotFound, "no user with id %q", id)
	}
	if errors.Is(err, model.ErrUnavailable) {
		adminLog().Error("storage unavailable", zap.Error(err))
		return apiError(http.StatusServiceUnavailable, "the storage is unavailable; retry later")
	}
	return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
}

// adminStore finds the open store named by the storage parameter: a bbolt
// file's path, resolved like the config's (relative to Caddy's working
// directory), or another kind's "<kind>:<location>".
func adminStore(path string) (*sharedStore, error) {
	if _, ok := storePool.References(path); ok {
		return findStore(path)
	}
	if path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, apiError(http.StatusBadRequest, "storage %q: %v", path, err)
		}
		path = abs
	}
	sh, err := findStore(path)
	if err == nil {
		return sh, nil
	}
	status := http.StatusNotFound
	if path == "" {
		open := 0
		storePool.Range(func(any, any) bool { open++; return true })
		if open > 1 {
			status = http.StatusBadRequest // ambiguous: the caller must choose
		}
	}
	return nil, caddy.APIError{HTTPStatus: status, Err: err}
}

func writeAdminJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(v)
}

func adminLog() *zap.Logger { return caddy.Log().Named("guest_auth.admin") }

// UserView is a user as the admin API shows it: everything but the
// password hash. Times absent from the record are null.
type UserView struct {
	ID           string     `json:"id"`
	Name         string     `json:"name"`
	DisplayName  string     `json:"display_name"`
	Tag          string     `json:"tag"`
	IsAnonymous  bool       `json:"is_anonymous"`
	Kept         bool       `json:"kept"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	LastActiveAt *time.Time `json:"last_active_at"`
	OrphanedAt   *time.Time `json:"orphaned_at"`
	HasPassword  bool       `json:"has_password"`
	DeviceKID    string     `json:"device_kid"`
}

func viewUser(u *model.User) UserView {
	opt := func(t time.Time) *time.Time {
		if t.IsZero() {
			return nil
		}
		return &t
	}
	return UserView{
		ID: u.ID, Name: u.Name, DisplayName: u.DisplayName, Tag: u.Tag,
		IsAnonymous: u.IsAnonymous(), Kept: u.Kept,
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		LastActiveAt: opt(u.LastActiveAt), OrphanedAt: opt(u.OrphanedAt),
		HasPassword: u.PasswordHash != "", DeviceKID: u.DeviceKID,
	}
}

// UserPage is one page of the user list.
type UserPage struct {
	Users []UserView `json:"users"`
	// Next is the `after` of the next page, "" on the last one.
	Next string `json:"next"`
}

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

func adminListUsers(w http.ResponseWriter, r *http.Request, sh *sharedStore, _ string) error {
	q := r.URL.Query()
	tag := q.Get("tag")
	if tag != "" && tag != model.TagGuest && tag != model.TagNormal {
		return apiError(http.StatusBadRequest, "tag must be %s or %s, not %q", model.TagGuest, model.TagNormal, tag)
	}
	limit := defaultPageSize
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return apiError(http.StatusBadRequest, "limit must be a positive integer, not %q", v)
		}
		limit = min(n, maxPageSize)
	}
	users, next, err := sh.store.ListUsers(r.Context(), q.Get("after"), tag, limit)
	if err != nil {
		return storeError(err, "")
	}
	page := UserPage{Users: make([]UserView, len(users)), Next: next}
	for i := range users {
		page.Users[i] = viewUser(&users[i])
	}
	return writeAdminJSON(w, page)
}

func adminShowUser(w http.ResponseWriter, r *http.Request, sh *sharedStore, id string) error {
	u, err := sh.store.GetUser(r.Context(), id)
	if err != nil {
		return storeError(err, id)
	}
	return writeAdminJSON(w, viewUser(u))
}

func adminDeleteUser(w http.ResponseWriter, r *http.Request, sh *sharedStore, id string) error {
	if g := sh.handler(); g != nil { // reports user.deleted: apps may need to delete the user's data
		if _, err := g.svc.DeleteUser(r.Context(), id, "admin"); err != nil {
			return storeError(err, id)
		}
	} else { // the file is closing: no config to report to
		if _, err := sh.store.GetUser(r.Context(), id); err != nil {
			return storeError(err, id)
		}
		if err := sh.store.DeleteUser(r.Context(), id, nil); err != nil {
			return storeError(err, id)
		}
		adminLog().Info(events.UserDeleted, zap.String("user_id", id))
	}
	return writeAdminJSON(w, map[string]any{"id": id, "deleted": true})
}

func adminKeepUser(w http.ResponseWriter, r *http.Request, sh *sharedStore, id string) error {
	var body struct {
		Kept *bool `json:"kept"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		return apiError(http.StatusBadRequest, `body must be empty or {"kept": true|false}: %v`, err)
	}
	kept := body.Kept == nil || *body.Kept
	var u *model.User
	var err error
	if g := sh.handler(); g != nil {
		u, err = g.svc.SetKept(r.Context(), id, kept, "admin")
	} else {
		u, err = sh.store.UpdateUser(r.Context(), id, func(u *model.User) error {
			u.Kept = kept
			return nil
		}, nil)
		if err == nil {
			adminLog().Info(accounts.UserKept, zap.String("user_id", id), zap.Bool("kept", kept))
		}
	}
	if err != nil {
		return storeError(err, id)
	}
	return writeAdminJSON(w, viewUser(u))
}

func adminRevokeUser(w http.ResponseWriter, r *http.Request, sh *sharedStore, id string) error {
	var n int
	var err error
	if g := sh.handler(); g != nil { // reports session.revoked, as a logout does: apps may react
		n, err = g.svc.RevokeUserSessions(r.Context(), id, "admin")
	} else {
		// DeleteUserSessions does not tell an unknown user from one without
		// sessions; the admin should hear which it was.
		if _, err = sh.store.GetUser(r.Context(), id); err == nil {
			n, err = sh.store.DeleteUserSessions(r.Context(), id, "", nil)
		}
	}
	if err != nil {
		return storeError(err, id)
	}
	return writeAdminJSON(w, map[string]any{"id": id, "revoked": n})
}

func adminPrune(w http.ResponseWriter, r *http.Request, sh *sharedStore, _ string) error {
	dryRun := false
	if v := r.URL.Query().Get("dry_run"); v != "" {
		var err error
		if dryRun, err = strconv.ParseBool(v); err != nil {
			return apiError(http.StatusBadRequest, "dry_run must be true or false, not %q", v)
		}
	}
	g := sh.handler()
	if g == nil { // the file is closing: its last config is being cleaned up
		return apiError(http.StatusServiceUnavailable, "no config is using %s", sh.store.Describe())
	}
	rep, err := g.prune(r.Context(), dryRun)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("pruning guests: %w", err)}
	}
	return writeAdminJSON(w, rep)
}

func adminStats(w http.ResponseWriter, r *http.Request, sh *sharedStore, _ string) error {
	st, err := sh.store.Stats(r.Context())
	if err != nil {
		return storeError(err, "")
	}
	return writeAdminJSON(w, st)
}

// backupIdle bounds how long one write of the backup may wait on the
// client: the copy's read transaction keeps bbolt from growing the file, so
// a stalled download must not hold it for long.
const backupIdle = 30 * time.Second

func adminBackup(w http.ResponseWriter, r *http.Request, sh *sharedStore, _ string) error {
	path := sh.store.Describe()
	name := fmt.Sprintf("%s-%s.db", strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), time.Now().UTC().Format("20060102T150405Z"))
	rc := http.NewResponseController(w)
	started := false
	n, err := sh.store.Backup(r.Context(), idleWriter{w, rc}, func(size int64) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		started = true
	})
	_ = rc.SetWriteDeadline(time.Time{}) // the connection may serve more requests
	if err != nil {
		if !started {
			return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("backup: %w", err)}
		}
		// Too late for an error answer; the short body (less than
		// Content-Length) tells the client the copy is incomplete.
		adminLog().Error("backup interrupted", zap.String("storage", path), zap.Int64("written", n), zap.Error(err))
		return nil
	}
	adminLog().Info("backup", zap.String("storage", path), zap.Int64("bytes", n))
	return nil
}

// idleWriter gives each write a fresh deadline (see backupIdle).
type idleWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (d idleWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(backupIdle))
	return d.w.Write(p)
}

var _ caddy.AdminRouter = (*AdminAPI)(nil)

// adminRotateKeys makes a new signing key for the signing_alg of the newest
// config using the store: it signs from now on (on the other instances
// sharing a PostgreSQL store within 30 seconds), and the older keys still
// verify the tokens they signed.
func adminRotateKeys(w http.ResponseWriter, r *http.Request, sh *sharedStore, _ string) error {
	g := sh.handler()
	if g == nil {
		return apiError(http.StatusServiceUnavailable, "no config is using %s", sh.store.Describe())
	}
	kid, err := sh.keys.Rotate(r.Context(), g.alg)
	if err != nil {
		return storeError(err, "")
	}
	adminLog().Info("signing key rotated", zap.String("storage", sh.store.Describe()), zap.String("kid", kid), zap.String("alg", g.alg.String()))
	return writeAdminJSON(w, map[string]string{"kid": kid, "alg": g.alg.String()})
}

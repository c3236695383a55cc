// Package admin is guestauth's operator side: the management routes on
// Caddy's admin endpoint (/guest_auth/...) and the `caddy guest-auth` CLI
// that calls them. The Caddy module registers both and tells Routes how to
// find the store a request names. Every write goes through the accounts
// Service of a config using the store, so it reports its event (user.deleted,
// user.kept, session.revoked, guest.expired) as the same write made by a
// request does; while no config uses the store, writes are refused.
package admin

import (
	"context"
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
	"github.com/guestauth/caddy-guestauth/internal/dashboard"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Store is what the routes read from an open store.
type Store interface {
	GetUser(ctx context.Context, id string) (*model.User, error)
	ListUsers(ctx context.Context, after, tag string, limit int) (users []model.User, next string, err error)
	Stats(ctx context.Context) (*storage.Stats, error)
	Counts(ctx context.Context) (*storage.Stats, error)
	Daily(ctx context.Context, from, to string) ([]storage.DayCount, error)
	CountIdleGuests(ctx context.Context, before time.Time) (int64, error)
	ListIdentityLinks(ctx context.Context, userID string) ([]model.IdentityLink, error)
	ListPasskeys(ctx context.Context, userID string) ([]model.Passkey, error)
	Backup(ctx context.Context, w io.Writer, size func(n int64)) (int64, error)
	Describe() string
}

// Accounts is the part of the accounts Service the routes write through:
// each method reports its event.
type Accounts interface {
	DeleteUser(ctx context.Context, id, cause string) (*model.User, error)
	SetKept(ctx context.Context, id string, kept bool, cause string) (*model.User, error)
	RevokeUserSessions(ctx context.Context, id, cause string) (int, error)
}

var _ Accounts = (*accounts.Service)(nil)

// Target is the store a request names, and the newest config using it.
type Target struct {
	Store Store
	// Site is nil while no config uses the store (it is opening or
	// closing): there is then nowhere to report a write's event, and
	// writes are answered 503.
	Site *Site
}

// Site is a config using the store: its settings (guest_ttl, signing_alg)
// apply to the admin's operations.
type Site struct {
	Accounts Accounts
	// Prune runs one guest expiry sweep, as the automatic one does.
	Prune func(ctx context.Context, dryRun bool) (*accounts.PruneReport, error)
	// RotateKey makes a new signing key for the config's signing_alg.
	RotateKey func(ctx context.Context) (kid, alg string, err error)
	// GuestTTL is the config's guest_ttl (the dashboard's idle count).
	GuestTTL time.Duration
}

// Finder finds the Target a request's storage parameter names ("" when
// only one store is open); its errors are caddy.APIErrors.
type Finder func(storage string) (Target, error)

const adminBase = "/guest_auth/"

// Routes are the admin routes, for caddy.AdminRouter, served on Caddy's
// admin endpoint (local-only by default, `localhost:2019`) with its usual
// access controls. Requests and answers are JSON; errors are
// `{"error": "<message>"}` with a fitting status.
//
//	GET    /guest_auth/users?tag=&after=&limit=  users in id order, a page at a time
//	GET    /guest_auth/users/<id>                one user
//	GET    /guest_auth/users/<id>/identities     its linked provider accounts, oldest first
//	GET    /guest_auth/users/<id>/passkeys       its passkeys (never their keys), oldest first
//	DELETE /guest_auth/users/<id>                delete a user, its sessions and device key
//	POST   /guest_auth/users/<id>/keep           mark kept; body {"kept": false} unmarks
//	POST   /guest_auth/users/<id>/revoke         end all the user's sessions
//	POST   /guest_auth/prune?dry_run=true|false  run one guest expiry sweep now
//	GET    /guest_auth/stats                     user, guest and session counts, file size
//	GET    /guest_auth/dashboard?days=30          the dashboard's numbers (docs/dashboard.md): now, per UTC day, 30/90-day totals
//	GET    /guest_auth/backup                    a consistent copy of the bbolt file
//	POST   /guest_auth/keys/rotate               a new signing key: {"kid": ..., "alg": ...}
//
// The user list takes `tag` (`guest-user` or `normal-user`), `limit`
// (default 100, at most 1000) and `after` (the `next` of the previous page;
// `next` is "" on the last page). Users are shown without their password
// hash (`has_password` says whether there is one).
//
// Every route takes `storage=<path>` to choose the store when the running
// config uses more than one. The prune uses the `guest_ttl` of the newest
// config using the store, as the automatic sweep does; a new key is for its
// signing_alg (see adminRotateKeys). The backup is taken from one read
// transaction while the server keeps serving; it holds signing keys and
// password hashes, so store it as carefully as the file.
func Routes(find Finder) []caddy.AdminRoute {
	mux := newMux(find)
	return []caddy.AdminRoute{{Pattern: adminBase, Handler: caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		res := &adminResult{ResponseWriter: w}
		mux.ServeHTTP(res, r)
		return res.err
	})}}
}

type adminHandler func(w http.ResponseWriter, r *http.Request, t Target, id string) error

// newMux routes by method and path (the id is the {id} wildcard). A path
// asked for with another method is answered 405 with an Allow header, one
// outside the table 404, both as API errors.
func newMux(find Finder) *http.ServeMux {
	mux := http.NewServeMux()
	for path, methods := range map[string]map[string]adminHandler{
		"/guest_auth/users":                 {http.MethodGet: adminListUsers},
		"/guest_auth/users/{id}":            {http.MethodGet: adminShowUser, http.MethodDelete: adminDeleteUser},
		"/guest_auth/users/{id}/keep":       {http.MethodPost: adminKeepUser},
		"/guest_auth/users/{id}/identities": {http.MethodGet: adminUserIdentities},
		"/guest_auth/users/{id}/passkeys":   {http.MethodGet: adminUserPasskeys},
		"/guest_auth/users/{id}/revoke":     {http.MethodPost: adminRevokeUser},
		"/guest_auth/prune":                 {http.MethodPost: adminPrune},
		"/guest_auth/stats":                 {http.MethodGet: adminStats},
		"/guest_auth/dashboard":             {http.MethodGet: adminDashboard},
		"/guest_auth/backup":                {http.MethodGet: adminBackup},
		"/guest_auth/keys/rotate":           {http.MethodPost: adminRotateKeys},
	} {
		allowed := slices.Sorted(maps.Keys(methods))
		for m, h := range methods {
			mux.HandleFunc(m+" "+path, adminRoute(func(w http.ResponseWriter, r *http.Request) error {
				if r.Method != m { // a GET pattern also matches HEAD
					return methodNotAllowed(w, r, allowed)
				}
				t, err := find(r.URL.Query().Get("storage"))
				if err != nil {
					return err
				}
				return h(w, r, t, r.PathValue("id"))
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

// adminResult carries a route's error out of the mux to Caddy's admin
// handler, which writes it as the JSON error answer.
type adminResult struct {
	http.ResponseWriter
	err error
}

// adminRoute adapts a route returning an error to the mux.
func adminRoute(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		res := w.(*adminResult)
		res.err = h(res.ResponseWriter, r)
	}
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
	// Identities counts the linked provider accounts (listed by
	// /users/<id>/identities).
	Identities int `json:"identities"`
	// Passkeys counts the user's passkeys (listed by /users/<id>/passkeys).
	Passkeys int `json:"passkeys"`
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
		HasPassword: u.PasswordHash != "", DeviceKID: u.DeviceKID, Identities: u.Identities,
		Passkeys: u.Passkeys,
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

func adminListUsers(w http.ResponseWriter, r *http.Request, t Target, _ string) error {
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
	users, next, err := t.Store.ListUsers(r.Context(), q.Get("after"), tag, limit)
	if err != nil {
		return storeError(err, "")
	}
	page := UserPage{Users: make([]UserView, len(users)), Next: next}
	for i := range users {
		page.Users[i] = viewUser(&users[i])
	}
	return writeAdminJSON(w, page)
}

func adminShowUser(w http.ResponseWriter, r *http.Request, t Target, id string) error {
	u, err := t.Store.GetUser(r.Context(), id)
	if err != nil {
		return storeError(err, id)
	}
	return writeAdminJSON(w, viewUser(u))
}

// IdentityView is a linked provider account as the admin API shows it.
type IdentityView struct {
	Provider string    `json:"provider"`
	Issuer   string    `json:"issuer"`
	Subject  string    `json:"subject"`
	LinkedAt time.Time `json:"linked_at"`
}

func adminUserIdentities(w http.ResponseWriter, r *http.Request, t Target, id string) error {
	if _, err := t.Store.GetUser(r.Context(), id); err != nil {
		return storeError(err, id)
	}
	links, err := t.Store.ListIdentityLinks(r.Context(), id)
	if err != nil {
		return storeError(err, id)
	}
	out := make([]IdentityView, 0, len(links))
	for _, l := range links {
		out = append(out, IdentityView{Provider: l.Provider, Issuer: l.Issuer, Subject: l.Subject, LinkedAt: l.LinkedAt})
	}
	return writeAdminJSON(w, map[string]any{"identities": out})
}

// site is t's config, or the 503 of a write while no config uses the store.
func site(t Target) (*Site, error) {
	if t.Site == nil {
		return nil, apiError(http.StatusServiceUnavailable, "no config is using %s", t.Store.Describe())
	}
	return t.Site, nil
}

func adminDeleteUser(w http.ResponseWriter, r *http.Request, t Target, id string) error {
	s, err := site(t)
	if err != nil {
		return err
	}
	// Reports user.deleted: apps may need to delete the user's data.
	if _, err := s.Accounts.DeleteUser(r.Context(), id, "admin"); err != nil {
		return storeError(err, id)
	}
	return writeAdminJSON(w, map[string]any{"id": id, "deleted": true})
}

func adminKeepUser(w http.ResponseWriter, r *http.Request, t Target, id string) error {
	s, err := site(t)
	if err != nil {
		return err
	}
	var body struct {
		Kept *bool `json:"kept"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		return apiError(http.StatusBadRequest, `body must be empty or {"kept": true|false}: %v`, err)
	}
	kept := body.Kept == nil || *body.Kept
	u, err := s.Accounts.SetKept(r.Context(), id, kept, "admin") // reports user.kept
	if err != nil {
		return storeError(err, id)
	}
	return writeAdminJSON(w, viewUser(u))
}

func adminRevokeUser(w http.ResponseWriter, r *http.Request, t Target, id string) error {
	s, err := site(t)
	if err != nil {
		return err
	}
	// Reports session.revoked, as a logout does: apps may react.
	n, err := s.Accounts.RevokeUserSessions(r.Context(), id, "admin")
	if err != nil {
		return storeError(err, id)
	}
	return writeAdminJSON(w, map[string]any{"id": id, "revoked": n})
}

func adminPrune(w http.ResponseWriter, r *http.Request, t Target, _ string) error {
	dryRun := false
	if v := r.URL.Query().Get("dry_run"); v != "" {
		var err error
		if dryRun, err = strconv.ParseBool(v); err != nil {
			return apiError(http.StatusBadRequest, "dry_run must be true or false, not %q", v)
		}
	}
	s, err := site(t)
	if err != nil {
		return err
	}
	rep, err := s.Prune(r.Context(), dryRun) // reports guest.expired for each guest deleted
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("pruning guests: %w", err)}
	}
	return writeAdminJSON(w, rep)
}

// adminDashboard answers the dashboard's report (dashboard.Report) for
// the last days days (default 30, at most 366), from the store's
// counters: no scan of the users.
func adminDashboard(w http.ResponseWriter, r *http.Request, t Target, _ string) error {
	days := 30
	if v := r.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 366 {
			return apiError(http.StatusBadRequest, "days must be a number from 1 to 366")
		}
		days = n
	}
	var ttl time.Duration
	if t.Site != nil {
		ttl = t.Site.GuestTTL
	}
	rep, err := dashboard.Build(r.Context(), t.Store, time.Now(), days, ttl)
	if err != nil {
		return storeError(err, "")
	}
	return writeAdminJSON(w, rep)
}

func adminStats(w http.ResponseWriter, r *http.Request, t Target, _ string) error {
	st, err := t.Store.Stats(r.Context())
	if err != nil {
		return storeError(err, "")
	}
	return writeAdminJSON(w, st)
}

// backupIdle bounds how long one write of the backup may wait on the
// client: the copy's read transaction keeps bbolt from growing the file, so
// a stalled download must not hold it for long.
const backupIdle = 30 * time.Second

func adminBackup(w http.ResponseWriter, r *http.Request, t Target, _ string) error {
	path := t.Store.Describe()
	name := fmt.Sprintf("%s-%s.db", strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), time.Now().UTC().Format("20060102T150405Z"))
	rc := http.NewResponseController(w)
	started := false
	n, err := t.Store.Backup(r.Context(), idleWriter{w, rc}, func(size int64) {
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

// adminRotateKeys makes a new signing key for the signing_alg of the newest
// config using the store: it signs from now on (on the other instances
// sharing a PostgreSQL store within 30 seconds), and the older keys still
// verify the tokens they signed.
func adminRotateKeys(w http.ResponseWriter, r *http.Request, t Target, _ string) error {
	s, err := site(t)
	if err != nil {
		return err
	}
	kid, alg, err := s.RotateKey(r.Context())
	if err != nil {
		return storeError(err, "")
	}
	adminLog().Info("signing key rotated", zap.String("storage", t.Store.Describe()), zap.String("kid", kid), zap.String("alg", alg))
	return writeAdminJSON(w, map[string]string{"kid": kid, "alg": alg})
}

// PasskeyView is a passkey as the admin API shows it: its id and label,
// not its public key or counters.
type PasskeyView struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

func adminUserPasskeys(w http.ResponseWriter, r *http.Request, t Target, id string) error {
	if _, err := t.Store.GetUser(r.Context(), id); err != nil {
		return storeError(err, id)
	}
	pks, err := t.Store.ListPasskeys(r.Context(), id)
	if err != nil {
		return storeError(err, id)
	}
	out := make([]PasskeyView, 0, len(pks))
	for _, pk := range pks {
		v := PasskeyView{ID: pk.ID, Name: pk.Name, CreatedAt: pk.CreatedAt}
		if !pk.LastUsedAt.IsZero() {
			v.LastUsedAt = &pk.LastUsedAt
		}
		out = append(out, v)
	}
	return writeAdminJSON(w, map[string]any{"passkeys": out})
}

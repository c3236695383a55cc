package protocol

// Casdoor's user API for server-side apps the site owner trusts: a client
// configured with manage_users calls it with its own credentials (HTTP
// Basic, as casdoor-go-sdk and casdoor-nodejs-sdk send them, or clientId
// and clientSecret parameters), answered in Casdoor's envelope
// {status, msg, data, data2} with users in the shape of Casdoor's User
// object. Users are named <organization>/<name>, the organization being
// the site's `organization` option. Every write goes through the accounts
// Service (manage.go) and reports its event.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/ctcmp"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Paths of Casdoor's user API (update-user is PathUpdateUser).
//
//nolint:gosec // G101: URL paths, not credentials
const (
	PathGetUser     = "/api/get-user"
	PathGetUsers    = "/api/get-users"
	PathAddUser     = "/api/add-user"
	PathDeleteUser  = "/api/delete-user"
	PathSetPassword = "/api/set-password"
)

// Limits of get-users: a page has at most maxPageSize users and starts at
// most maxUserOffset users in (skipping them costs a scan); without pages
// it answers at most maxUnpagedUsers.
const (
	maxPageSize     = 1000
	maxUserOffset   = 100_000
	maxUnpagedUsers = 10_000
)

// Casdoor's modify answers.
const (
	affected   = "Affected"
	unaffected = "Unaffected"
)

// casdoorUser is a user as Casdoor's User object has it, with the fields
// this site keeps (the SDKs decode it into their User types; every field
// has the type Casdoor gives it). The password is never shown: "***" says
// there is one, as Casdoor masks it.
type casdoorUser struct {
	Owner       string `json:"owner"`
	Name        string `json:"name"`
	CreatedTime string `json:"createdTime"`
	UpdatedTime string `json:"updatedTime"`
	ID          string `json:"id"`
	Type        string `json:"type"`
	Password    string `json:"password"`
	DisplayName string `json:"displayName"`
	Tag         string `json:"tag"`
	IsAdmin     bool   `json:"isAdmin"`
	IsForbidden bool   `json:"isForbidden"`
	IsDeleted   bool   `json:"isDeleted"`
	// guestauth's own, unknown to Casdoor's SDKs (they ignore them).
	IsAnonymous bool `json:"isAnonymous"`
	HasPassword bool `json:"hasPassword"`
	Kept        bool `json:"kept"`
}

func (h *Handler) casdoorUser(u *model.User) *casdoorUser {
	pw := ""
	if u.PasswordHash != "" {
		pw = "***"
	}
	return &casdoorUser{
		Owner: h.Accounts.Organization(), Name: u.Name, ID: u.ID, Type: "normal-user", Password: pw,
		CreatedTime: u.CreatedAt.UTC().Format(time.RFC3339), UpdatedTime: u.UpdatedAt.UTC().Format(time.RFC3339),
		DisplayName: u.DisplayName, Tag: u.Tag, IsAnonymous: u.IsAnonymous(), HasPassword: u.PasswordHash != "", Kept: u.Kept,
	}
}

// The user API's refusals of a client.
var (
	errNoManagerCredentials = &httpError{status: http.StatusUnauthorized, challenge: `Basic realm="` + realm + `"`,
		err: &accounts.Error{Code: accounts.CodeInvalidClient, Description: "The client's credentials are required: HTTP Basic, or clientId and clientSecret."}}
	errNotManager = &httpError{status: http.StatusForbidden,
		err: &accounts.Error{Code: accounts.CodeUnauthorizedClient, Description: "This client may not manage users (it has no manage_users)."}}
)

// isManagerCall reports whether a request to /api/update-user is a
// managing client's (HTTP Basic, or a clientId parameter without an
// Authorization header) rather than a user's own (Bearer).
func isManagerCall(r *http.Request) bool {
	if _, _, basic := r.BasicAuth(); basic {
		return true
	}
	return r.Header.Get("Authorization") == "" && r.URL.Query().Has("clientId")
}

// manager authenticates a managing client: HTTP Basic (as the SDKs send
// it), or clientId and clientSecret from the query or, for a form body,
// from form (nil for other bodies). Both given must agree. The client
// must have manage_users (403 otherwise).
func (h *Handler) manager(r *http.Request, form map[string]string) (*Client, error) {
	q := r.URL.Query()
	id, okID := queryParam(q, "clientId")
	secret, okSecret := queryParam(q, "clientSecret")
	if !okID || !okSecret {
		return nil, badRequest("clientId and clientSecret may be given once each.")
	}
	if id == "" && secret == "" && form != nil {
		id, secret = form["clientId"], form["clientSecret"]
	}
	var c *Client
	if rawID, rawSecret, basic := r.BasicAuth(); basic {
		var matched string
		var err error
		if c, matched, err = h.basicClient(rawID, rawSecret); err != nil {
			return nil, err
		}
		if (id != "" && id != c.ID) || (secret != "" && !ctcmp.Equal([]byte(secret), []byte(matched))) {
			return nil, clientError(true, "The clientId or clientSecret differs from the Basic credentials.")
		}
	} else {
		if id == "" {
			return nil, errNoManagerCredentials
		}
		if c = h.matchClient(id, secret); c == nil {
			return nil, clientError(false, "Client authentication failed.")
		}
	}
	if !c.ManageUsers {
		return nil, errNotManager
	}
	return c, nil
}

// userNotFound is the 404 of a write naming no user of this site.
func userNotFound(id string) error {
	return &httpError{status: http.StatusNotFound, err: &accounts.Error{Code: "not_found", Description: fmt.Sprintf("The user %q does not exist.", id)}}
}

// splitUserID splits Casdoor's user id <owner>/<name>.
func splitUserID(id string) (owner, name string, err error) {
	owner, name, ok := strings.Cut(id, "/")
	if !ok || owner == "" || name == "" {
		return "", "", badRequest("The id must be <organization>/<name>, not %q.", id)
	}
	return owner, name, nil
}

// userByID reads the user of Casdoor's id (<owner>/<name>); a user of
// another organization does not exist here (model.ErrNotFound).
func (h *Handler) userByID(ctx context.Context, id string) (*model.User, error) {
	owner, name, err := splitUserID(id)
	if err != nil {
		return nil, err
	}
	if owner != h.Accounts.Organization() {
		return nil, model.ErrNotFound
	}
	return h.Accounts.UserByName(ctx, name)
}

// okEnvelope answers Casdoor's success envelope.
func okEnvelope(w http.ResponseWriter, data, data2 any) error {
	return WriteJSON(w, http.StatusOK, envelope{Status: "ok", Data: data, Data2: data2})
}

// GetUser is Casdoor's get-user for a managing client, GET: ?id=<org>/<name>,
// or ?owner=<org>&userId=<id>. A user that does not exist is data null, as
// Casdoor answers; so is a lookup by email or phone (nobody has one here).
func (h *Handler) GetUser(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.manager(r, nil); err != nil {
		return h.writeEnvelopeError(w, err)
	}
	q := r.URL.Query()
	var u *model.User
	var err error
	switch {
	case q.Has("id"):
		u, err = h.userByID(r.Context(), q.Get("id"))
	case q.Has("userId"):
		if owner := q.Get("owner"); owner != "" && owner != h.Accounts.Organization() {
			err = model.ErrNotFound
		} else {
			u, err = h.Accounts.UserByID(r.Context(), q.Get("userId"))
		}
	case q.Has("email"), q.Has("phone"):
		err = model.ErrNotFound
	default:
		err = badRequest("Give id=<organization>/<name>, or owner and userId.")
	}
	if errors.Is(err, model.ErrNotFound) {
		return okEnvelope(w, nil, nil)
	}
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	return okEnvelope(w, h.casdoorUser(u), nil)
}

// GetUsers is Casdoor's get-users for a managing client, GET: the users of
// ?owner=<org> in id (creation) order. With p and pageSize, page p (from 1)
// of pageSize (at most 1000), starting at most 100000 users in, and data2
// the number of users; without, all users, at most 10000 (more is refused:
// ask for pages). field=tag&value=guest-user|normal-user filters by tag.
func (h *Handler) GetUsers(w http.ResponseWriter, r *http.Request) error {
	if _, err := h.manager(r, nil); err != nil {
		return h.writeEnvelopeError(w, err)
	}
	q := r.URL.Query()
	if owner := q.Get("owner"); owner != "" && owner != h.Accounts.Organization() {
		return okEnvelope(w, []*casdoorUser{}, 0)
	}
	tag := ""
	if q.Get("field") == "tag" {
		tag = q.Get("value")
		if tag != model.TagGuest && tag != model.TagNormal {
			return okEnvelope(w, []*casdoorUser{}, 0)
		}
	}
	paged := q.Has("p") || q.Has("pageSize")
	offset, limit := 0, maxUnpagedUsers+1
	if paged {
		p, err1 := strconv.Atoi(q.Get("p"))
		size, err2 := strconv.Atoi(q.Get("pageSize"))
		if err1 != nil || err2 != nil || p < 1 || size < 1 || size > maxPageSize {
			return h.writeEnvelopeError(w, badRequest("p must be a page number from 1 and pageSize from 1 to %d.", maxPageSize))
		}
		if (p-1)*size > maxUserOffset {
			return h.writeEnvelopeError(w, badRequest("A page may start at most %d users in.", maxUserOffset))
		}
		offset, limit = (p-1)*size, size
	}
	users, err := h.listUsers(r.Context(), tag, offset, limit)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	if !paged {
		if len(users) > maxUnpagedUsers {
			return h.writeEnvelopeError(w, badRequest("There are more than %d users: ask for pages (p and pageSize).", maxUnpagedUsers))
		}
		return okEnvelope(w, users, nil)
	}
	total, err := h.Accounts.CountUsers(r.Context(), tag)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	return okEnvelope(w, users, total)
}

// listUsers reads up to limit users with tag after skipping offset.
func (h *Handler) listUsers(ctx context.Context, tag string, offset, limit int) ([]*casdoorUser, error) {
	out := []*casdoorUser{}
	after := ""
	for {
		n := min(limit-len(out), maxPageSize)
		if offset > 0 {
			n = min(offset, maxPageSize) // skipping
		}
		page, next, err := h.Accounts.ListUsers(ctx, after, tag, n)
		if err != nil {
			return nil, err
		}
		for i := range page {
			if offset > 0 {
				offset--
				continue
			}
			out = append(out, h.casdoorUser(&page[i]))
		}
		if next == "" || len(out) >= limit {
			return out, nil
		}
		after = next
	}
}

// manageUpdateUser is Casdoor's update-user for a managing client, POST
// ?id=<org>/<name>[&columns=...] with the User object (JSON, or JSON as
// text/plain): of its fields name (a rename), displayName and password
// (unless "" or "***", Casdoor's mask) are applied, the others ignored;
// columns, when given, limits the update to those it names.
func (h *Handler) manageUpdateUser(w http.ResponseWriter, r *http.Request) error {
	c, err := h.manager(r, nil)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	id := r.URL.Query().Get("id")
	u, err := h.userByID(r.Context(), id)
	if errors.Is(err, model.ErrNotFound) {
		err = userNotFound(id)
	}
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	body, err := readUserObject(w, r)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	want := func(string) bool { return true }
	if cols := r.URL.Query().Get("columns"); cols != "" {
		set := map[string]bool{}
		for col := range strings.SplitSeq(cols, ",") {
			set[strings.TrimSpace(col)] = true
		}
		want = func(name string) bool { return set[name] }
	}
	ch := accounts.UserChange{ClientID: c.ID, ClientIP: h.LimitKey(r)}
	if v, ok := body["name"]; ok && v != "" && want("name") {
		ch.Name = &v
	}
	if v, ok := body["displayName"]; ok && (want("displayName") || want("display_name")) {
		ch.DisplayName = &v
	}
	if v, ok := body["password"]; ok && v != "" && v != "***" && want("password") {
		ch.Password = &v
	}
	_, changed, err := h.Accounts.ManageUpdate(r.Context(), u.ID, ch)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	if !changed {
		return okEnvelope(w, unaffected, nil)
	}
	return okEnvelope(w, affected, nil)
}

// AddUser is Casdoor's add-user for a managing client, POST with the User
// object: name (required), displayName and password (optional; "" for
// none) are taken, the others ignored. owner, when given, must be the
// site's organization. The user is normal-user; one without a password
// is kept (it would expire like a guest otherwise).
func (h *Handler) AddUser(w http.ResponseWriter, r *http.Request) error {
	c, err := h.manager(r, nil)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	body, err := readUserObject(w, r)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	org := h.Accounts.Organization()
	if owner := body["owner"]; owner != "" && owner != org {
		return h.writeEnvelopeError(w, badRequest("The organization %q is not this site's (%q).", owner, org))
	}
	name := body["name"]
	if name == "" {
		return h.writeEnvelopeError(w, badRequest("The user's name is required."))
	}
	var pw *string
	if v := body["password"]; v != "" {
		pw = &v
	}
	if _, err := h.Accounts.ManageCreate(r.Context(), name, body["displayName"], pw, c.ID, h.LimitKey(r)); err != nil {
		return h.writeEnvelopeError(w, err)
	}
	return okEnvelope(w, affected, nil)
}

// DeleteUser is Casdoor's delete-user for a managing client, POST
// ?id=<org>/<name>, or the User object's owner and name. Deleting a user
// that does not exist is data "Unaffected", as Casdoor answers.
func (h *Handler) DeleteUser(w http.ResponseWriter, r *http.Request) error {
	c, err := h.manager(r, nil)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	id := r.URL.Query().Get("id")
	if r.ContentLength != 0 {
		body, err := readUserObject(w, r)
		if err != nil {
			return h.writeEnvelopeError(w, err)
		}
		if id == "" {
			id = body["owner"] + "/" + body["name"]
		}
	}
	u, err := h.userByID(r.Context(), id)
	if err == nil {
		_, err = h.Accounts.ManageDelete(r.Context(), u.ID, c.ID)
	}
	switch {
	case errors.Is(err, model.ErrNotFound):
		return okEnvelope(w, unaffected, nil)
	case err != nil:
		return h.writeEnvelopeError(w, err)
	}
	return okEnvelope(w, affected, nil)
}

// SetPassword is Casdoor's set-password for a managing client, POST with
// the form (multipart, as both SDKs send it, or urlencoded) userOwner,
// userName, newPassword and oldPassword: an oldPassword that is not empty
// must be the current password; an empty one is not needed (the client
// is the site's own). Replacing a password ends the user's sessions.
func (h *Handler) SetPassword(w http.ResponseWriter, r *http.Request) error {
	params, err := readParamsAs(w, r, multipartFields)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	c, err := h.manager(r, params)
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	owner, name := params["userOwner"], params["userName"]
	if owner == "" || name == "" {
		return h.writeEnvelopeError(w, badRequest("userOwner and userName are required."))
	}
	newPW, oldPW := params["newPassword"], params["oldPassword"]
	if newPW == "" {
		return h.writeEnvelopeError(w, badRequest("newPassword is required."))
	}
	id := owner + "/" + name
	u, err := h.userByID(r.Context(), id)
	if errors.Is(err, model.ErrNotFound) {
		err = userNotFound(id)
	}
	if err != nil {
		return h.writeEnvelopeError(w, err)
	}
	ch := accounts.UserChange{Password: &newPW, OldPassword: &oldPW, ClientID: c.ID, ClientIP: h.LimitKey(r)}
	if _, _, err := h.Accounts.ManageUpdate(r.Context(), u.ID, ch); err != nil {
		return h.writeEnvelopeError(w, err)
	}
	return okEnvelope(w, affected, nil)
}

package e2e

// Integration tests of the admin API (/guest_auth/ on Caddy's admin
// endpoint), of the `caddy guest-auth` commands that call it, and of the
// upstream's keep header.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// admin calls the admin API; body, when not nil, is sent as JSON.
func (s *server) admin(method, path string, body any) *response {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, "http://"+s.Admin+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.exchange(req)
}

// adminOK calls the admin API and decodes its 200 answer.
func (s *server) adminOK(method, path string, body any) map[string]any {
	s.t.Helper()
	r := s.admin(method, path, body)
	if r.Status != http.StatusOK {
		s.t.Fatalf("%s %s: %d %s", method, path, r.Status, r.Body)
	}
	return r.JSON(s.t)
}

// wantAdminError checks an admin API error: status and message.
func wantAdminError(t *testing.T, r *response, status int, msg string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	if e, _ := r.JSON(t)["error"].(string); !strings.Contains(e, msg) {
		t.Fatalf("error %q does not say %q", e, msg)
	}
}

// cli runs `caddy guest-auth <args> --address <admin>`.
func (s *server) cli(args ...string) (stdout, stderr string, err error) {
	s.t.Helper()
	cmd := exec.Command(caddyBin, append(append([]string{"guest-auth"}, args...), "--address", s.Admin)...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+s.Dir, "XDG_CONFIG_HOME="+s.Dir, "HOME="+s.Dir)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// cliJSON runs a command that must succeed and decodes what it printed.
func (s *server) cliJSON(args ...string) map[string]any {
	s.t.Helper()
	out, errOut, err := s.cli(args...)
	if err != nil {
		s.t.Fatalf("caddy guest-auth %v: %v\nstdout: %s\nstderr: %s", args, err, out, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		s.t.Fatalf("caddy guest-auth %v printed no JSON object: %v: %q", args, err, out)
	}
	if !strings.Contains(out, "\n  \"") {
		s.t.Fatalf("caddy guest-auth %v output is not indented: %q", args, out)
	}
	return m
}

// cliFails runs a command that must fail, saying msg on stderr.
func (s *server) cliFails(msg string, args ...string) {
	s.t.Helper()
	out, errOut, err := s.cli(args...)
	if err == nil {
		s.t.Fatalf("caddy guest-auth %v succeeded: %s", args, out)
	}
	if !strings.Contains(errOut, msg) {
		s.t.Fatalf("caddy guest-auth %v: stderr does not say %q: %s", args, msg, errOut)
	}
}

func userID(t *testing.T, ts tokenSet) string {
	t.Helper()
	_, c := jwtParts(t, ts.AccessToken)
	id, _ := c["sub"].(string)
	if id == "" {
		t.Fatal("access token without sub")
	}
	return id
}

// upgrade names a guest and gives it a password, making it a normal user.
func (s *server) upgrade(ts tokenSet, name string) {
	s.t.Helper()
	wantEnvelope(s.t, s.updateUser(ts.AccessToken, map[string]string{"name": name, "password": name + "-password-1"}), http.StatusOK, "ok")
}

func pageIDs(t *testing.T, page map[string]any) []string {
	t.Helper()
	users, ok := page["users"].([]any)
	if !ok {
		t.Fatalf("page without users: %v", page)
	}
	var ids []string
	for _, u := range users {
		ids = append(ids, u.(map[string]any)["id"].(string))
	}
	return ids
}

func TestAdminListUsersPagedAndFiltered(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	var all, guests, normal []string
	for i := range 5 {
		ts := s.createGuest()
		all = append(all, userID(t, ts))
		if i < 2 {
			s.upgrade(ts, fmt.Sprintf("user%d", i))
			normal = append(normal, userID(t, ts))
		} else {
			guests = append(guests, userID(t, ts))
		}
	}
	for _, ids := range [][]string{all, guests, normal} {
		slices.Sort(ids)
	}

	// Pages of 2 through the API: 2, 2, 1, in id order.
	var got []string
	after := ""
	for pages := 0; ; pages++ {
		page := s.adminOK(http.MethodGet, "/guest_auth/users?limit=2&after="+after, nil)
		ids := pageIDs(t, page)
		got = append(got, ids...)
		after, _ = page["next"].(string)
		if after == "" {
			if pages != 2 || len(ids) != 1 {
				t.Fatalf("last page %d has %d users", pages, len(ids))
			}
			break
		}
		if len(ids) != 2 || after != ids[1] {
			t.Fatalf("page %d: %v, next %q", pages, ids, after)
		}
	}
	if !slices.Equal(got, all) {
		t.Fatalf("paged through %v, want %v", got, all)
	}
	if ids := pageIDs(t, s.adminOK(http.MethodGet, "/guest_auth/users", nil)); !slices.Equal(ids, all) {
		t.Fatalf("default page: %v", ids)
	}
	if ids := pageIDs(t, s.adminOK(http.MethodGet, "/guest_auth/users?limit=5000", nil)); !slices.Equal(ids, all) {
		t.Fatalf("a limit over the maximum is capped, not refused: %v", ids)
	}
	if ids := pageIDs(t, s.adminOK(http.MethodGet, "/guest_auth/users?tag=guest-user", nil)); !slices.Equal(ids, guests) {
		t.Fatalf("guests: %v, want %v", ids, guests)
	}
	page := s.adminOK(http.MethodGet, "/guest_auth/users?tag=normal-user", nil)
	if ids := pageIDs(t, page); !slices.Equal(ids, normal) {
		t.Fatalf("normal users: %v, want %v", ids, normal)
	}
	u := page["users"].([]any)[0].(map[string]any)
	if u["tag"] != model.TagNormal || u["is_anonymous"] != false || u["has_password"] != true || u["kept"] != false {
		t.Fatalf("normal user view: %v", u)
	}
	for _, k := range []string{"name", "display_name", "created_at", "updated_at", "last_active_at", "orphaned_at", "device_kid"} {
		if _, ok := u[k]; !ok {
			t.Fatalf("user view without %s: %v", k, u)
		}
	}
	wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/users?tag=admin", nil), http.StatusBadRequest, "tag must be")
	wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/users?limit=0", nil), http.StatusBadRequest, "limit")
	wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/users?limit=x", nil), http.StatusBadRequest, "limit")
	wantAdminError(t, s.admin(http.MethodPost, "/guest_auth/users", nil), http.StatusMethodNotAllowed, "not allowed")
	wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/nothing", nil), http.StatusNotFound, "no guest_auth admin route")

	// The same through the CLI.
	p1 := s.cliJSON("users", "--limit", "3")
	if ids := pageIDs(t, p1); !slices.Equal(ids, all[:3]) || p1["next"] != all[2] {
		t.Fatalf("cli page 1: %v", p1)
	}
	p2 := s.cliJSON("users", "--limit", "3", "--after", all[2])
	if ids := pageIDs(t, p2); !slices.Equal(ids, all[3:]) || p2["next"] != "" {
		t.Fatalf("cli page 2: %v", p2)
	}
	if ids := pageIDs(t, s.cliJSON("users", "--tag", "normal-user")); !slices.Equal(ids, normal) {
		t.Fatalf("cli normal users: %v", ids)
	}
	s.cliFails("tag must be", "users", "--tag", "nobody")
}

func TestAdminShowUserNeverIncludesHash(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	g, n := s.createGuest(), s.createGuest()
	s.upgrade(n, "nora")

	r := s.admin(http.MethodGet, "/guest_auth/users/"+userID(t, g), nil)
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("show guest: %d %v %s", r.Status, r.Header, r.Body)
	}
	v := r.JSON(t)
	if v["id"] != userID(t, g) || v["tag"] != model.TagGuest || v["is_anonymous"] != true || v["has_password"] != false ||
		v["name"] != "guest_"+userID(t, g) || v["orphaned_at"] != nil {
		t.Fatalf("guest view: %v", v)
	}

	r = s.admin(http.MethodGet, "/guest_auth/users/"+userID(t, n), nil)
	v = r.JSON(t)
	if r.Status != http.StatusOK || v["name"] != "nora" || v["tag"] != model.TagNormal || v["has_password"] != true {
		t.Fatalf("upgraded user view: %d %v", r.Status, v)
	}
	out, _, err := s.cli("user", userID(t, n))
	if err != nil || !strings.Contains(out, `"nora"`) {
		t.Fatalf("cli user: %v %s", err, out)
	}
	for _, body := range []string{string(r.Body), out} {
		if strings.Contains(body, "password_hash") || strings.Contains(body, "$argon2") {
			t.Fatalf("a user view shows the password hash: %s", body)
		}
	}
	wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/users/no-such-user", nil), http.StatusNotFound, `no user with id "no-such-user"`)
	s.cliFails(`HTTP 404: no user with id "no-such-user"`, "user", "no-such-user")
	s.cliFails("accepts 1 arg", "user")
}

func TestAdminDeleteUser(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	a, b := s.createGuest(), s.createGuest()
	for _, ts := range []tokenSet{a, b} {
		if r := s.get("/app", ts.AccessToken); r.Status != http.StatusOK {
			t.Fatalf("before delete: %d", r.Status)
		}
	}

	v := s.adminOK(http.MethodDelete, "/guest_auth/users/"+userID(t, a), nil)
	if v["id"] != userID(t, a) || v["deleted"] != true {
		t.Fatalf("delete answer: %v", v)
	}
	if m := s.cliJSON("delete", userID(t, b)); m["deleted"] != true {
		t.Fatalf("cli delete: %v", m)
	}
	if !s.HasLog(`"user.deleted"`) || !s.HasLog(userID(t, b)) {
		t.Fatal("no user.deleted event logged")
	}
	for _, ts := range []tokenSet{a, b} {
		if r := s.get("/app", ts.AccessToken); r.Status != http.StatusUnauthorized {
			t.Fatalf("token of a deleted user: %d", r.Status)
		}
		if r := s.refresh(ts.RefreshToken); r.Status != http.StatusBadRequest {
			t.Fatalf("refresh of a deleted user: %d", r.Status)
		}
		wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/users/"+userID(t, ts), nil), http.StatusNotFound, "no user")
	}
	wantAdminError(t, s.admin(http.MethodDelete, "/guest_auth/users/"+userID(t, a), nil), http.StatusNotFound, "no user")
	s.cliFails("HTTP 404", "delete", userID(t, a))
	if ids := pageIDs(t, s.adminOK(http.MethodGet, "/guest_auth/users", nil)); len(ids) != 0 {
		t.Fatalf("users left: %v", ids)
	}
}

func TestAdminKeepThenPrune(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "guest_ttl 1s\n\t\tsweep_interval 1h")
	kept, unkept, idle, again := s.createGuest(), s.createGuest(), s.createGuest(), s.createGuest()

	if v := s.adminOK(http.MethodPost, "/guest_auth/users/"+userID(t, kept)+"/keep", nil); v["kept"] != true || v["id"] != userID(t, kept) {
		t.Fatalf("keep: %v", v)
	}
	// Marked, then unmarked: expires like any guest.
	if v := s.adminOK(http.MethodPost, "/guest_auth/users/"+userID(t, unkept)+"/keep", map[string]bool{"kept": true}); v["kept"] != true {
		t.Fatalf("keep true: %v", v)
	}
	if v := s.adminOK(http.MethodPost, "/guest_auth/users/"+userID(t, unkept)+"/keep", map[string]bool{"kept": false}); v["kept"] != false {
		t.Fatalf("keep false: %v", v)
	}
	if v := s.cliJSON("keep", userID(t, again)); v["kept"] != true {
		t.Fatalf("cli keep: %v", v)
	}
	if v := s.cliJSON("keep", userID(t, again), "--unset"); v["kept"] != false {
		t.Fatalf("cli keep --unset: %v", v)
	}
	wantAdminError(t, s.admin(http.MethodPost, "/guest_auth/users/nobody/keep", nil), http.StatusNotFound, "no user")
	wantAdminError(t, s.admin(http.MethodPost, "/guest_auth/users/"+userID(t, kept)+"/keep", map[string]string{"keep": "yes"}), http.StatusBadRequest, "kept")
	s.cliFails("HTTP 404", "keep", "nobody")

	time.Sleep(2 * time.Second) // past guest_ttl for all four

	dry := s.cliJSON("prune", "--dry-run")
	wantPruned := []string{userID(t, unkept), userID(t, idle), userID(t, again)}
	slices.Sort(wantPruned)
	if dry["dry_run"] != true || dry["count"] != float64(3) || !slices.Equal(prunedIDs(t, dry), wantPruned) {
		t.Fatalf("dry run: %v, want %v", dry, wantPruned)
	}
	if ids := pageIDs(t, s.adminOK(http.MethodGet, "/guest_auth/users", nil)); len(ids) != 4 {
		t.Fatalf("a dry run deleted users: %v", ids)
	}
	if rep := s.adminOK(http.MethodPost, "/guest_auth/prune?dry_run=true", nil); rep["count"] != float64(3) {
		t.Fatalf("API dry run: %v", rep)
	}

	rep := s.adminOK(http.MethodPost, "/guest_auth/prune", nil)
	if rep["dry_run"] != false || rep["count"] != float64(3) || !slices.Equal(prunedIDs(t, rep), wantPruned) {
		t.Fatalf("prune: %v", rep)
	}
	if ids := pageIDs(t, s.adminOK(http.MethodGet, "/guest_auth/users", nil)); !slices.Equal(ids, []string{userID(t, kept)}) {
		t.Fatalf("after prune: %v, want only the kept guest", ids)
	}
	if r := s.get("/app", kept.AccessToken); r.Status != http.StatusOK {
		t.Fatalf("kept guest's token: %d", r.Status)
	}
	if r := s.get("/app", idle.AccessToken); r.Status != http.StatusUnauthorized {
		t.Fatalf("pruned guest's token: %d", r.Status)
	}
	if again := s.cliJSON("prune"); again["count"] != float64(0) || again["dry_run"] != false {
		t.Fatalf("second prune: %v", again)
	}
	wantAdminError(t, s.admin(http.MethodPost, "/guest_auth/prune?dry_run=maybe", nil), http.StatusBadRequest, "dry_run")
	wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/prune", nil), http.StatusMethodNotAllowed, "not allowed")
}

func prunedIDs(t *testing.T, rep map[string]any) []string {
	t.Helper()
	var ids []string
	for _, u := range rep["users"].([]any) {
		ids = append(ids, u.(map[string]any)["user_id"].(string))
	}
	slices.Sort(ids)
	return ids
}

func TestAdminRevokeEndsSessions(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	n, g := s.createGuest(), s.createGuest()
	s.upgrade(n, "rita")
	second := decodeTokens(t, s.signIn("rita", "rita-password-1"))

	v := s.adminOK(http.MethodPost, "/guest_auth/users/"+userID(t, n)+"/revoke", nil)
	if v["revoked"] != float64(2) || v["id"] != userID(t, n) {
		t.Fatalf("revoke: %v", v)
	}
	if v := s.cliJSON("revoke", userID(t, g)); v["revoked"] != float64(1) {
		t.Fatalf("cli revoke: %v", v)
	}
	for name, ts := range map[string]tokenSet{"first": n, "second": second, "guest": g} {
		if r := s.get("/app", ts.AccessToken); r.Status != http.StatusUnauthorized {
			t.Fatalf("%s token after revoke: %d", name, r.Status)
		}
	}
	// The user remains and may sign in again.
	if v := s.adminOK(http.MethodGet, "/guest_auth/users/"+userID(t, n), nil); v["name"] != "rita" {
		t.Fatalf("user after revoke: %v", v)
	}
	decodeTokens(t, s.signIn("rita", "rita-password-1"))
	if v := s.cliJSON("revoke", userID(t, g)); v["revoked"] != float64(0) {
		t.Fatalf("second revoke: %v", v)
	}
	wantAdminError(t, s.admin(http.MethodPost, "/guest_auth/users/nobody/revoke", nil), http.StatusNotFound, "no user")
	s.cliFails("HTTP 404", "revoke", "nobody")
	if !strings.Contains(s.Logs(), `"msg":"session.revoked","event_id"`) || !strings.Contains(s.Logs(), `"cause":"admin"`) {
		t.Fatal("no session.revoked event with cause admin logged")
	}
}

func TestAdminStats(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	a, b, c := s.createGuest(), s.createGuest(), s.createGuest()
	s.upgrade(a, "stan")
	s.adminOK(http.MethodPost, "/guest_auth/users/"+userID(t, b)+"/keep", nil)
	_ = c

	want := map[string]float64{"users": 3, "normal_users": 1, "live_guests": 2, "kept_guests": 1, "sessions": 3}
	for name, st := range map[string]map[string]any{
		"api": s.adminOK(http.MethodGet, "/guest_auth/stats", nil),
		"cli": s.cliJSON("stats"),
	} {
		for k, n := range want {
			if st[k] != n {
				t.Fatalf("%s stats %s = %v, want %v: %v", name, k, st[k], n, st)
			}
		}
		size, _ := st["file_size"].(float64)
		data, _ := st["data_size"].(float64)
		fi, err := os.Stat(s.DB)
		if err != nil || data <= 0 || size < data || int64(size) > fi.Size() {
			t.Fatalf("%s stats sizes: file %v data %v (on disk %d): %v", name, size, data, fi.Size(), err)
		}
		if st["path"] != s.DB {
			t.Fatalf("%s stats path %v, want %s", name, st["path"], s.DB)
		}
	}
}

func TestAdminBackup(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	var ids []string
	for i := range 3 {
		ts := s.createGuest()
		if i == 0 {
			s.upgrade(ts, "bea")
		}
		ids = append(ids, userID(t, ts))
	}
	slices.Sort(ids)

	r := s.admin(http.MethodGet, "/guest_auth/backup", nil)
	if r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/octet-stream" ||
		r.Header.Get("Content-Length") != fmt.Sprint(len(r.Body)) ||
		!strings.HasPrefix(r.Header.Get("Content-Disposition"), `attachment; filename=guestauth-`) {
		t.Fatalf("backup answer: %d %v (%d bytes)", r.Status, r.Header, len(r.Body))
	}
	wantAdminError(t, s.admin(http.MethodPost, "/guest_auth/backup", nil), http.StatusMethodNotAllowed, "not allowed")

	dir := t.TempDir()
	out := filepath.Join(dir, "copy.db")
	m := s.cliJSON("backup", "--output", out)
	if fi, err := os.Stat(out); err != nil || m["output"] != out || m["bytes"] != float64(fi.Size()) || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cli backup: %v, file %v, %v", m, fi, err)
	}
	// No overwrite without --force, and the existing file is untouched.
	before, _ := os.ReadFile(out)
	s.cliFails("exists; use --force", "backup", "--output", out)
	if after, _ := os.ReadFile(out); !bytes.Equal(before, after) {
		t.Fatal("a refused backup changed the existing file")
	}
	s.createGuest() // a change the forced backup must contain
	if m := s.cliJSON("backup", "--output", out, "--force"); m["output"] != out {
		t.Fatalf("forced backup: %v", m)
	}
	s.cliFails("--output is required", "backup")
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("backup left files behind: %v", entries)
	}

	// The copy opens as a store (while Caddy still holds the original) and
	// holds the users, with their password hashes.
	st, err := bolt.Open(out, bolt.Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	users, _, err := st.ListUsers(context.Background(), "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	hashes := 0
	for _, u := range users {
		got = append(got, u.ID)
		if u.PasswordHash != "" {
			hashes++
		}
	}
	if len(got) != 4 || hashes != 1 {
		t.Fatalf("backup holds %d users (%d with a password), want 4 (1)", len(got), hashes)
	}
	for _, id := range ids {
		if !slices.Contains(got, id) {
			t.Fatalf("user %s missing from the backup", id)
		}
	}
	if keys, err := st.SigningKeys(context.Background()); err != nil || len(keys) == 0 {
		t.Fatalf("backup has no signing keys: %v", err)
	}
}

func TestAdminStorageSelection(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	port2 := freePort(t)
	db2 := filepath.Join(s.Dir, "second.db")
	s.Start(fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		client demo-app demo-secret
	}
	reverse_proxy %s
}
http://127.0.0.1:%d {
	guest_auth {
		storage second.db
		client demo-app demo-secret
	}
	respond "second"
}
`, s.Admin, s.Port, s.DB, strings.TrimPrefix(s.Upstream.URL, "http://"), port2))
	s.createGuest()

	wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/stats", nil), http.StatusBadRequest, "several guest_auth storage files")
	s.cliFails("several guest_auth storage files", "stats")
	if st := s.adminOK(http.MethodGet, "/guest_auth/stats?storage="+s.DB, nil); st["users"] != float64(1) {
		t.Fatalf("first file: %v", st)
	}
	// A relative path is resolved as in the config (Caddy's working directory).
	if st := s.adminOK(http.MethodGet, "/guest_auth/stats?storage=second.db", nil); st["users"] != float64(0) || st["path"] != db2 {
		t.Fatalf("second file: %v", st)
	}
	if st := s.cliJSON("stats", "--storage", db2); st["path"] != db2 {
		t.Fatalf("cli second file: %v", st)
	}
	wantAdminError(t, s.admin(http.MethodGet, "/guest_auth/stats?storage=/nowhere.db", nil), http.StatusNotFound, `no guest_auth storage is open at "/nowhere.db"`)
	s.cliFails("no guest_auth storage is open", "users", "--storage", "/nowhere.db")

	// --config finds the admin address in the Caddyfile (--address wins
	// over it, so call the binary directly here).
	cmd := exec.Command(caddyBin, "guest-auth", "stats", "--storage", s.DB, "--config", filepath.Join(s.Dir, "Caddyfile"), "--adapter", "caddyfile")
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+s.Dir, "XDG_CONFIG_HOME="+s.Dir, "HOME="+s.Dir)
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), `"users": 1`) {
		t.Fatalf("stats with --config: %v: %s", err, out)
	}
}

func TestCLIUnreachableAndUnknown(t *testing.T) {
	t.Parallel()
	s := newServer(t) // not started: nothing listens on s.Admin
	s.cliFails("is Caddy running?", "stats")
	s.cliFails(`unknown guest-auth command "frobnicate"`, "frobnicate")
}

// keepUpstream answers like the harness's echo upstream, and sets the keep
// header to the value of the request's ?keep= parameter, if any.
func keepUpstream(t *testing.T) *httptest.Server {
	u := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v, ok := r.URL.Query()["keep"]; ok {
			w.Header().Set("X-Guest-Auth-Keep", v[0])
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(r.Header)
	}))
	t.Cleanup(u.Close)
	return u
}

func TestKeepHeaderMarksGuest(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	up := keepUpstream(t)
	s.Start(fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://127.0.0.1:%d {
	guest_auth {
		storage %s
		client demo-app demo-secret
	}
	reverse_proxy %s
}
`, s.Admin, s.Port, s.DB, strings.TrimPrefix(up.URL, "http://")))
	kept, refused, plain, named := s.createGuest(), s.createGuest(), s.createGuest(), s.createGuest()
	s.upgrade(named, "nick")
	// A name-only upgrade leaves a passwordless user, who expires like a
	// guest and so can be kept like one.
	nameOnly := s.createGuest()
	wantEnvelope(t, s.updateUser(nameOnly.AccessToken, map[string]string{"name": "nona"}), http.StatusOK, "ok")

	isKept := func(ts tokenSet) bool {
		return s.adminOK(http.MethodGet, "/guest_auth/users/"+userID(t, ts), nil)["kept"] == true
	}
	noKeepHeader := func(r *response) {
		t.Helper()
		if r.Status != http.StatusOK {
			t.Fatalf("proxied request: %d %s", r.Status, r.Body)
		}
		for k := range r.Header {
			if strings.EqualFold(k, "X-Guest-Auth-Keep") {
				t.Fatalf("the client saw the keep header: %v", r.Header)
			}
		}
	}

	noKeepHeader(s.get("/app?keep=true", kept.AccessToken))
	if !isKept(kept) {
		t.Fatal("keep header did not mark the guest")
	}
	noKeepHeader(s.get("/app?keep=false", refused.AccessToken))
	noKeepHeader(s.get("/app", plain.AccessToken))
	noKeepHeader(s.get("/app?keep=true", named.AccessToken))
	noKeepHeader(s.get("/app?keep=true", ""))
	noKeepHeader(s.get("/app?keep=true", nameOnly.AccessToken))
	if !isKept(nameOnly) {
		t.Fatal("keep header did not mark the passwordless user")
	}
	for name, ts := range map[string]tokenSet{"keep=false": refused, "no header": plain, "normal user": named} {
		if isKept(ts) {
			t.Fatalf("%s: marked kept", name)
		}
	}
	// A kept guest asking again stays kept; the header is still removed.
	noKeepHeader(s.get("/app?keep=TRUE", kept.AccessToken))
	if st := s.adminOK(http.MethodGet, "/guest_auth/stats", nil); st["kept_guests"] != float64(1) {
		t.Fatalf("kept guests: %v", st)
	}
}

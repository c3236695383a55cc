package headers

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// names are a config's identity header names ("" for the default).
type names = Names

// stripper is the identity headers of a config naming names.
func stripper(n names) *Identity { return NewIdentity(n) }

func TestStripConnectionTokens(t *testing.T) {
	custom := names{UserID: "X-User", UserTag: "X-Role"}
	for _, c := range []struct {
		name    string
		headers names
		field   string // Connection unless set
		in      []string
		want    []string // nil: the field is deleted
	}{
		{name: "identity only", in: []string{"X-Auth-User-Tag, X-Auth-User-Anonymous"}},
		{name: "id", in: []string{"X-Auth-User-Id"}},
		{name: "close kept", in: []string{"close, X-Auth-User-Id"}, want: []string{"close"}},
		{name: "keep-alive and Upgrade kept", in: []string{"keep-alive,x_auth_user_id,Upgrade"}, want: []string{"keep-alive, Upgrade"}},
		{name: "spellings", in: []string{"X.Auth.User.Name ,\tX-AUTH-USER-TAG,x-Auth_user.anonymous, close"}, want: []string{"close"}},
		{name: "several fields", in: []string{"X-Auth-User-Id", "Upgrade", "x_auth_user_tag, keep-alive"}, want: []string{"Upgrade", "keep-alive"}},
		{name: "empty elements", in: []string{" , X-Auth-User-Tag,,"}},
		{name: "merged-from", in: []string{"X-Auth-Merged-From, close"}, want: []string{"close"}},
		// The config sets no assertion: a captured one is stripped anyway.
		{name: "assertion", in: []string{"x_auth.ASSERTION, close"}, want: []string{"close"}},
		{name: "custom assertion and merged-from, defaults too", headers: names{Assertion: "X-App-Assertion", MergedFrom: "X-App-Merged"},
			in: []string{"x_app_assertion, X-Auth-Assertion, X-App-Merged, x-auth-merged-from, close"}, want: []string{"close"}},
		{name: "look-alikes kept", in: []string{"X-Auth-User-Ids, X-Auth-User, close"}, want: []string{"X-Auth-User-Ids, X-Auth-User, close"}},
		{name: "untouched", in: []string{"close"}, want: []string{"close"}},
		{name: "custom names", headers: custom, in: []string{"x_user, X-ROLE, close, X-Auth-User-Id"}, want: []string{"close"}},
		{name: "trailer field", field: "Trailer", in: []string{"X-Auth-User-Id, X-Checksum", "x_auth_user_tag"}, want: []string{"X-Checksum"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := stripper(c.headers)
			field := c.field
			if field == "" {
				field = "Connection"
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.Header[field] = slices.Clone(c.in)
			r.Header.Set("X-Other", "kept")
			g.Strip(r)
			got, ok := r.Header[field]
			if c.want == nil {
				if ok {
					t.Fatalf("%s = %q, want it deleted", field, got)
				}
			} else if !slices.Equal(got, c.want) {
				t.Fatalf("%s = %q, want %q", field, got, c.want)
			}
			if r.Header.Get("X-Other") != "kept" {
				t.Fatalf("another header lost: %v", r.Header)
			}
		})
	}
}

// TestStripSet: whatever a config names, the strip set is its names and
// every default name (the assertion and merged-from headers included),
// each once.
func TestStripSet(t *testing.T) {
	all := []string{"x-auth-user-id", "x-auth-user-name", "x-auth-user-tag", "x-auth-user-anonymous", "x-auth-assertion", "x-auth-merged-from"}
	if got := NewIdentity(Names{}).Names(); !slices.Equal(got, all) {
		t.Fatalf("defaults: %v", got)
	}
	got := NewIdentity(Names{UserID: "X-User", Assertion: "X_App_Assertion", MergedFrom: "x-auth-merged-from"}).Names()
	want := append([]string{"x-user", "x-auth-user-name", "x-auth-user-tag", "x-auth-user-anonymous", "x-app-assertion", "x-auth-merged-from"}, "x-auth-user-id", "x-auth-assertion")
	if !slices.Equal(got, want) {
		t.Fatalf("custom names: %v, want %v", got, want)
	}
}

// TestStripAllocationFree: the common requests (no Connection field, or
// one naming no identity header, no trailers) cost no allocation.
func TestStripAllocationFree(t *testing.T) {
	g := stripper(names{})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Accept", "*/*")
	r.Header.Set("User-Agent", "test")
	r.Header.Set("Authorization", "Bearer x")
	for _, conn := range []string{"", "keep-alive", "Upgrade", "close"} {
		if conn != "" {
			r.Header.Set("Connection", conn)
		}
		if n := testing.AllocsPerRun(100, func() { g.Strip(r) }); n > 0 {
			t.Errorf("Connection %q: %v allocations per request", conn, n)
		}
	}
}

// trailerEcho serves Strip then reads the body to EOF, as
// reverse_proxy does, and answers the trailers it then sees.
func trailerEcho(t *testing.T, g *Identity) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.Strip(r)
		announced := map[string]bool{}
		for k := range r.Trailer {
			announced[k] = true
		}
		if _, err := io.ReadAll(r.Body); err != nil {
			t.Error(err)
		}
		json.NewEncoder(w).Encode(map[string]any{"announced": announced, "trailer": r.Trailer, "header": r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// rawExchange writes a raw HTTP/1.1 request and decodes the JSON answer.
func rawExchange(t *testing.T, addr, req string) map[string]map[string]any {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestStripIdentityTrailers(t *testing.T) {
	g := stripper(names{})
	srv := trailerEcho(t, g)
	addr := strings.TrimPrefix(srv.URL, "http://")
	spoofTrailers := "X-Auth-User-Id: spoof\r\nx_auth_user_tag: spoof\r\nX-Auth-Merged-From: spoof\r\nx_auth_assertion: spoof\r\n"
	for _, c := range []struct {
		name, declared string
		want           []string // trailers seen after EOF
	}{
		// net/http merges every trailer sent into a declared map.
		{"declared other", "X-Checksum", []string{"X-Checksum"}},
		{"declared identity", "X-Auth-User-Id, X-Checksum, X_Auth_User_Tag, X-Auth-Assertion", []string{"X-Checksum"}},
		// Undeclared: net/http sets a new map on its own Request at EOF
		// (here, the handler's).
		{"none declared", "", []string{"X-Checksum"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
			if c.declared != "" {
				req += "Trailer: " + c.declared + "\r\n"
			}
			req += "\r\n5\r\nhello\r\n0\r\nX-Checksum: abc\r\n" + spoofTrailers + "\r\n"
			out := rawExchange(t, addr, req)
			var got []string
			for k := range out["trailer"] {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) {
				t.Fatalf("trailers after EOF = %v, want %v (%v)", got, c.want, out)
			}
			for k := range out["announced"] {
				if g.is(k) {
					t.Fatalf("identity trailer %q still announced", k)
				}
			}
			for k := range out["header"] {
				if g.is(k) {
					t.Fatalf("identity header %q", k)
				}
			}
		})
	}
}

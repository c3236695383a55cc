package pages

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
)

func TestSafeReturn(t *testing.T) {
	for in, want := range map[string]string{
		"/members/area?x=1#top":         "/members/area?x=1#top",
		"/":                             "/",
		"":                              "/",
		"members":                       "/",
		"https://evil.example/":         "/",
		"//evil.example/x":              "/",
		"/\\evil.example":               "/",
		"\\\\evil.example":              "/",
		"javascript:alert(1)":           "/",
		"http:/x":                       "/",
		"/a\r\nSet-Cookie: x=1":         "/",
		"/a\tb":                         "/",
		"/" + strings.Repeat("a", 3000): "/",
	} {
		if got := safeReturn(in); got != want {
			t.Errorf("safeReturn(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBrowserCookieAttributes(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	b := &Pages{CookieName: "guestauth_session", Now: func() time.Time { return now }}
	login := &accounts.BrowserLogin{Handle: "h", Session: &model.Session{ExpiresAt: now.Add(2 * time.Hour), IdleExpiresAt: now.Add(time.Hour)}}
	for _, https := range []bool{false, true} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if https {
			r.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		b.setSession(w, r, login)
		cs := w.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("cookies %v", cs)
		}
		c := cs[0]
		wantName := "guestauth_session"
		if https {
			wantName = "__Host-guestauth_session"
		}
		if c.Name != wantName || c.Value != "h" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" || c.Secure != https || c.MaxAge != 3600 {
			t.Fatalf("https=%v: cookie %+v", https, c)
		}
		// The cookie is read under the same name only.
		r.Header.Set("Cookie", "guestauth_session=a; __Host-guestauth_session=b")
		if h, ok := b.readSession(r); !ok || (https && h != "b") || (!https && h != "a") {
			t.Fatalf("https=%v: read %q %v", https, h, ok)
		}
	}
	// Both spellings are stripped from what the upstream gets.
	h := http.Header{"Cookie": {"a=1; guestauth_session=x; __Host-guestauth_session=y; b=2"}}
	b.StripSession(h)
	if got := h.Get("Cookie"); got != "a=1; b=2" {
		t.Fatalf("stripped Cookie %q", got)
	}
}

func TestIsNavigation(t *testing.T) {
	for _, c := range []struct {
		method, accept string
		want           bool
	}{
		{http.MethodGet, "text/html,application/xhtml+xml,*/*;q=0.8", true},
		{http.MethodHead, "text/html", true},
		{http.MethodGet, "application/json", false},
		{http.MethodGet, "*/*", false},
		{http.MethodGet, "", false},
		{http.MethodPost, "text/html", false},
	} {
		r := httptest.NewRequest(c.method, "/", nil)
		if c.accept != "" {
			r.Header.Set("Accept", c.accept)
		}
		if got := isNavigation(r); got != c.want {
			t.Errorf("%s %q: %v", c.method, c.accept, got)
		}
	}
}

// Site owners override any template and add a stylesheet from a directory.
func TestPagesOverride(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "signin.html"), []byte(`{{define "content"}}<p>Custom sign-in for {{.ReturnTo}}</p>{{end}}`), 0o644)
	os.WriteFile(filepath.Join(dir, "style.css"), []byte(`body{color:red}`), 0o644)
	ps, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if string(ps.siteCSS) != "body{color:red}" {
		t.Fatalf("site css %q", ps.siteCSS)
	}
	var out strings.Builder
	d := &PageData{Page: "signin", Title: "Sign in", Prefix: "/auth/", ReturnTo: "/x?<script>", SiteCSS: true}
	if err := ps.tmpl["signin"].ExecuteTemplate(&out, "layout", d); err != nil {
		t.Fatal(err)
	}
	html := out.String()
	if !strings.Contains(html, "Custom sign-in for /x?&lt;script&gt;") || !strings.Contains(html, `href="/auth/site.css"`) {
		t.Fatalf("override not used or not escaped:\n%s", html)
	}
	// The other pages keep the built-in templates.
	out.Reset()
	d.Page = "signup"
	if err := ps.tmpl["signup"].ExecuteTemplate(&out, "layout", d); err != nil || !strings.Contains(out.String(), `autocomplete="new-password"`) {
		t.Fatalf("signup: %v\n%s", err, out.String())
	}
	// A broken template is refused at provision.
	os.WriteFile(filepath.Join(dir, "guest.html"), []byte(`{{define "content"}}{{.Nope`), 0o644)
	if _, err := Load(dir); err == nil {
		t.Fatal("broken template loaded")
	}
}

// Every form field has a label and the autocomplete password managers need.
func TestPagesForms(t *testing.T) {
	ps, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	for page, want := range map[string][]string{
		"signin":  {`name="username"`, `autocomplete="username"`, `name="password"`, `autocomplete="current-password"`, `<label for="username">`, `<label for="password">`},
		"signup":  {`name="username"`, `autocomplete="username"`, `name="password"`, `autocomplete="new-password"`},
		"account": {`name="current_password"`, `autocomplete="current-password"`, `autocomplete="new-password"`, `<label for="current_password">`},
	} {
		var out strings.Builder
		d := &PageData{Page: page, Prefix: "/auth/", ReturnTo: "/", User: &PageUser{Name: "alice", HasPassword: true}}
		if page != "account" {
			d.User = nil
		}
		if err := ps.tmpl[page].ExecuteTemplate(&out, "layout", d); err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s lacks %s", page, w)
			}
		}
		if strings.Contains(out.String(), "<script") || strings.Contains(out.String(), "style=") {
			t.Errorf("%s has inline script or style (the CSP forbids them)", page)
		}
	}
}

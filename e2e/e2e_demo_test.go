package e2e

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// startExample runs Caddyfile.example on ports of the test's own, with the
// demo upstream; it returns the server and the upstream's base URL.
func startExample(t *testing.T) (*server, string) {
	t.Helper()
	src := readExample(t)
	s := newServer(t)
	up := freePort(t)
	s.Env = []string{
		"GUEST_AUTH_PORT=" + strconv.Itoa(s.Port),
		"GUEST_AUTH_UPSTREAM_PORT=" + strconv.Itoa(up),
		"GUEST_AUTH_ADMIN=" + s.Admin,
		"GUEST_AUTH_UPSTREAM=",
	}
	s.Start(src)
	s.Base = "http://localhost:" + strconv.Itoa(s.Port)
	return s, "http://localhost:" + strconv.Itoa(up)
}

// The demo upstream answers a browser with a page showing who it is (the
// identity headers, escaped) and where to go; API clients still get the
// JSON echo, unchanged.
func TestDemoUpstreamPage(t *testing.T) {
	t.Parallel()
	s, upstream := startExample(t)
	v := newVisitor(t, s)
	page := v.page("/")
	body := string(page.Body)
	if page.Status != http.StatusOK || page.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(page.Header.Get("Content-Security-Policy"), "default-src 'none'") || !strings.Contains(body, "<h1>Hello, guest</h1>") {
		t.Fatalf("demo page for a guest: %d %v\n%s", page.Status, page.Header, body)
	}
	// The same session through a script's fetch: the JSON echo, the same id.
	echo := v.fetch("/").JSON(t)
	if len(echo) != 5 || echo["X-Auth-User-Tag"] != "guest-user" || echo["X-Auth-Merged-From"] != "" {
		t.Fatalf("JSON echo: %v", echo)
	}
	for _, want := range []string{
		"<dt>X-Auth-User-Id</dt><dd><code>" + echo["X-Auth-User-Id"].(string) + "</code></dd>",
		"<dt>X-Auth-User-Anonymous</dt><dd><code>true</code></dd>",
		"<dt>X-Auth-Merged-From</dt><dd>not set</dd>",
		`<a href="/auth/signup">`, `<a href="/auth/signin">`, `<a href="/auth/account">`, `<a href="/members/">`,
		`<link rel="stylesheet" href="/auth/style.css">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("demo page lacks %s", want)
		}
	}
	// The stylesheet it links is guest_auth's.
	if css := v.send(mustRequest(t, http.MethodGet, s.Base+"/auth/style.css")); css.Status != 200 || !strings.HasPrefix(css.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("stylesheet: %d %v", css.Status, css.Header)
	}

	// After sign-up: a member.
	if r := v.post("/auth/signup", url.Values{"username": {"alice"}, "password": {"correct horse"}}); r.Status != http.StatusSeeOther {
		t.Fatalf("sign-up: %d %s", r.Status, r.Body)
	}
	body = string(v.page("/").Body)
	if !strings.Contains(body, "<h1>Hello, alice</h1>") || !strings.Contains(body, "<dd><code>normal-user</code></dd>") {
		t.Fatalf("demo page for a member:\n%s", body)
	}

	// curl as in the README: JSON, no guest.
	if r := s.get("/", ""); r.Status != http.StatusOK || r.Header.Get("Content-Type") != "application/json" || r.JSON(t)["X-Auth-User-Id"] != "" {
		t.Fatalf("curl: %d %v %s", r.Status, r.Header, r.Body)
	}

	// Caddy's templates do not escape; the page does, whatever reaches the
	// upstream (here a request sent to it directly, past guest_auth).
	req := mustRequest(t, http.MethodGet, upstream+"/")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("X-Auth-User-Id", `x"><script>alert(1)</script>`)
	req.Header.Set("X-Auth-User-Name", "<img src=x onerror=alert(1)>")
	direct := string(s.exchange(req).Body)
	if strings.Contains(direct, "<script>") || strings.Contains(direct, "<img") ||
		!strings.Contains(direct, "<h1>Hello, &lt;img src=x onerror=alert(1)&gt;</h1>") || !strings.Contains(direct, "x&#34;&gt;&lt;script&gt;") {
		t.Fatalf("demo page does not escape header values:\n%s", direct)
	}
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

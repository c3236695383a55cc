package e2e

// The optional signed identity header (assertion): a short JWT for the
// upstream, verifiable from the JWKS, for Bearer and browser requests.

import (
	"net/http"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jws"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

func TestAssertionHeader(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "assertion")
	ts := s.createGuest()
	_, set, _ := s.discover()

	r := s.get("/app", ts.AccessToken, "X-Auth-Assertion", "forged")
	raw := seen(t, r).Get("X-Auth-Assertion")
	if raw == "" || raw == "forged" {
		t.Fatalf("assertion header %q", raw)
	}
	tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithValidate(true), jwt.WithAudience(s.Base), jwt.WithIssuer(s.Base))
	if err != nil {
		t.Fatalf("assertion does not verify from the JWKS: %v", err)
	}
	_, c := jwtParts(t, ts.AccessToken)
	name, _ := tok.Get("name")
	tag, _ := tok.Get("tag")
	anon, _ := tok.Get("is_anonymous")
	if tok.Subject() != c["sub"] || name != c["name"] || tag != "guest-user" || anon != true {
		t.Fatalf("assertion claims %v", tok)
	}
	if life := tok.Expiration().Sub(tok.IssuedAt()); life <= 0 || life > time.Minute {
		t.Fatalf("assertion lifetime %v", life)
	}
	msg, _ := jws.Parse([]byte(raw))
	if typ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != "assertion+jwt" {
		t.Fatalf("typ %q", typ)
	}
	// Cached: the next request gets the same one.
	if again := seen(t, s.get("/app", ts.AccessToken)).Get("X-Auth-Assertion"); again != raw {
		t.Fatal("assertion re-signed on the next request")
	}
	// It is not an access token.
	if r := s.get("/app", raw); r.Status != http.StatusUnauthorized {
		t.Fatalf("assertion accepted as a Bearer token: %d", r.Status)
	}
	// An upgrade changes it at once.
	up := s.postJSON("/api/update-user", map[string]string{"name": "assertme", "password": "correct horse"}, "Authorization", "Bearer "+ts.AccessToken)
	if up.Status != http.StatusOK {
		t.Fatalf("upgrade: %d %s", up.Status, up.Body)
	}
	raw2 := seen(t, s.get("/app", ts.AccessToken)).Get("X-Auth-Assertion")
	tok2, err := jwt.Parse([]byte(raw2), jwt.WithKeySet(set))
	if err != nil {
		t.Fatal(err)
	}
	if name, _ := tok2.Get("name"); name != "assertme" {
		t.Fatalf("after the upgrade the assertion says %v", name)
	}
	// No user, no assertion; a client's copy is stripped.
	if h := seen(t, s.get("/app", "", "X-Auth-Assertion", "forged")); h.Get("X-Auth-Assertion") != "" {
		t.Fatalf("anonymous request: %v", h)
	}
}

func TestAssertionBrowser(t *testing.T) {
	t.Parallel()
	s := startBrowserSite(t, "", "assertion {\n lifetime 30s\n audience https://app.example\n}")
	r := newVisitor(t, s).page("/")
	id, _ := upstreamID(t, r)
	tok, err := jwt.ParseInsecure([]byte(seen(t, r).Get("X-Auth-Assertion")))
	if err != nil || tok.Subject() != id || len(tok.Audience()) != 1 || tok.Audience()[0] != "https://app.example" || tok.Expiration().Sub(tok.IssuedAt()) != 30*time.Second {
		t.Fatalf("browser assertion %v %v", tok, err)
	}
}

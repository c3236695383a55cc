package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// TestClockSkewZero: clock_skew 0s refuses a token the moment it expires,
// where the default 30s would still accept it.
func TestClockSkewZero(t *testing.T) {
	t.Parallel()
	s := startGuestAuth(t, "")
	ts := s.createGuest()
	_, c := jwtParts(t, ts.AccessToken)
	s.Stop()

	// A token of the same session, signed with the site's key, that
	// expired 10s ago.
	st, err := bolt.Open(s.DB, bolt.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tokens.LoadKeyring(context.Background(), st)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	m, err := keys.Mint(tokens.Grant{
		Alg: "RS256", Issuer: s.Base, ClientID: "demo-app", Scope: c["scope"].(string),
		Now: time.Now().Add(-70 * time.Second), AccessTTL: time.Minute, IDTTL: time.Minute,
	}, tokens.Subject{
		UserID: c["sub"].(string), Name: c["name"].(string), Tag: model.TagGuest,
		Anonymous: true, SessionID: c["sid"].(string), AuthTime: time.Now(),
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}

	s.Start(s.siteConfig("clock_skew 1m"))
	if resp := s.get("/app", m.AccessToken); resp.Status != http.StatusOK {
		t.Fatalf("control: the token 10s past exp with clock_skew 1m: %d %s", resp.Status, resp.Body)
	}
	s.Stop()

	s.Start(s.siteConfig("clock_skew 0s"))
	resp := s.get("/app", m.AccessToken)
	if resp.Status != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "expired") {
		t.Fatalf("clock_skew 0s: a token 10s past exp: %d %q %s, want 401 expired", resp.Status, resp.Header.Get("WWW-Authenticate"), resp.Body)
	}
}

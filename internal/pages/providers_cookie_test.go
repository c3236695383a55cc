package pages

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/oidcrp"
	"github.com/guestauth/caddy-guestauth/internal/oidcrp/oidcrptest"
)

// The binding cookie as browsers must accept it: on HTTPS Secure with the
// __Secure- prefix (a __Host- cookie must have Path=/, and browsers drop
// one that does not), HttpOnly, SameSite=Lax, host-only, sent to the
// provider pages only, for as long as a request may take.
func TestProviderBindingCookie(t *testing.T) {
	t.Parallel()
	issuer := oidcrptest.Start(t, "https://app.example/auth/provider/testidp/callback")
	rp, err := oidcrp.New(oidcrp.Config{Name: "testidp", Issuer: issuer, ClientID: oidcrptest.ClientID, ClientSecret: oidcrptest.ClientSecret}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPagesWith(t, 10)
	p.Providers = []Provider{{RP: rp, Label: "Test IdP"}}
	for _, https := range []bool{false, true} {
		r := httptest.NewRequest(http.MethodGet, "http://app.example/auth/provider/testidp/start?return_to=/x", nil)
		if https {
			r.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		if err := p.Serve(w, r); err != nil {
			t.Fatal(err)
		}
		if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), issuer) {
			t.Fatalf("https=%v: %d %s", https, w.Code, w.Header().Get("Location"))
		}
		cs := w.Result().Cookies()
		if len(cs) != 1 {
			t.Fatalf("cookies %v", cs)
		}
		c := cs[0]
		want := "guestauth_provider"
		if https {
			want = "__Secure-guestauth_provider"
		}
		if c.Name != want || len(c.Value) < 43 || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/auth/provider/" ||
			c.Domain != "" || c.Secure != https || c.MaxAge != 600 {
			t.Fatalf("https=%v: binding cookie %+v", https, c)
		}
	}
}

package pages

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/oidcrp"
)

// A provider answering with response_mode=form_post (Apple, asked for
// name or email) posts to the callback from its own site: the pages turn
// the POST into the callback's GET (a top-level navigation, which carries
// the SameSite=Lax cookies), keeping only the response's parameters and
// changing nothing. Other providers' callbacks take no POST.
func TestProviderFormPostCallback(t *testing.T) {
	t.Parallel()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	apple, err := oidcrp.New(oidcrp.Config{Name: "apple", Preset: "apple", ClientID: "com.example.web", AppleTeamID: "T", AppleKeyID: "K",
		ApplePrivateKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), Scopes: []string{"name", "email"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := oidcrp.New(oidcrp.Config{Name: "idp", Issuer: "https://idp.example", ClientID: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPagesWith(t, 100)
	p.Providers = []Provider{{RP: apple, Label: "Apple"}, {RP: plain, Label: "IdP"}}

	post := func(name string) *httptest.ResponseRecorder {
		form := url.Values{"code": {"c1"}, "state": {"s1"}, "user": {`{"email":"a@example.com"}`}, "id_token": {"x.y.z"}}
		r := httptest.NewRequest(http.MethodPost, "http://app.example/auth/provider/"+name+"/callback", strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Sec-Fetch-Site", "cross-site") // from appleid.apple.com
		w := httptest.NewRecorder()
		if err := p.Serve(w, r); err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := post("apple")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/auth/provider/apple/callback?code=c1&state=s1" || len(w.Result().Cookies()) != 0 {
		t.Fatalf("form_post: %d %q %v", w.Code, w.Header().Get("Location"), w.Result().Cookies())
	}
	if w := post("idp"); w.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST to a query-mode callback: %d", w.Code)
	}
}

package protocol

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/url"
	"testing"

	"github.com/casdoor/casdoor-go-sdk/casdoorsdk"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// certificatePEM is the PEM Casdoor's SDKs take as their certificate,
// made from the key set: the key's X.509 certificate when the set carries
// one (x5c), else its public key (SPKI), which the SDKs read as well.
func certificatePEM(t *testing.T, set []byte) string {
	t.Helper()
	keys, err := jwk.Parse(set)
	if err != nil || keys.Len() == 0 {
		t.Fatalf("key set: %v", err)
	}
	key, _ := keys.Key(keys.Len() - 1)
	if chain := key.X509CertChain(); chain != nil && chain.Len() > 0 {
		// jwx keeps each certificate as its base64 text (x5c).
		b64, _ := chain.Get(0)
		der, err := base64.StdEncoding.DecodeString(string(b64))
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	var raw any
	if err := key.Raw(&raw); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// casdoor-go-sdk's ParseJwtToken decodes every claim into its User type
// and checks the signature with the certificate: our access and ID tokens
// must parse, with the user's owner, name, id and tag, for each algorithm
// the SDK takes (RS256 and ES256 of ours), before and after an upgrade.
func TestCasdoorGoSDKParsesTokens(t *testing.T) {
	t.Parallel()
	for _, alg := range []jwa.SignatureAlgorithm{jwa.RS256, jwa.ES256} {
		t.Run(alg.String(), func(t *testing.T) {
			t.Parallel()
			h, _ := newSDKHandlerAlg(t, alg)
			sdk := casdoorsdk.NewClient(testIssuer, "app", "app-secret", certificatePEM(t, h.KeySet()), org, "app")
			tok := guestOf(t, h)
			sub := claims(t, tok["access_token"].(string))["sub"].(string)
			for _, which := range []string{"access_token", "id_token"} {
				c, err := sdk.ParseJwtToken(tok[which].(string))
				if err != nil {
					t.Fatalf("%s: %v", which, err)
				}
				if c.Owner != org || c.Id != sub || c.Name != "guest_"+sub || c.Tag != model.TagGuest || c.Subject != sub {
					t.Fatalf("%s: %+v", which, c.User)
				}
			}
			// Upgraded: the refreshed tokens name the user as it is now.
			if a := call(t, h.UpdateUser, form(PathUpdateUser, url.Values{"name": {"ursula"}, "password": {"ursula-password"}}, "Authorization", "Bearer "+tok["access_token"].(string))); a.status != http.StatusOK {
				t.Fatalf("upgrade: %+v", a)
			}
			next := call(t, h.RefreshCasdoor, form(PathRefreshCasdoor, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {"app"}, "client_secret": {"app-secret"}}))
			if next.status != http.StatusOK {
				t.Fatalf("refresh: %+v", next)
			}
			for _, which := range []string{"access_token", "id_token"} {
				c, err := sdk.ParseJwtToken(next.body[which].(string))
				if err != nil || c.Name != "ursula" || c.Tag != model.TagNormal || c.Id != sub || c.Owner != org {
					t.Fatalf("%s after the upgrade: %+v %v", which, c, err)
				}
			}
			// Another key's certificate does not verify them.
			other, _ := newSDKHandlerAlg(t, alg)
			wrong := casdoorsdk.NewClient(testIssuer, "app", "app-secret", certificatePEM(t, other.KeySet()), org, "app")
			if _, err := wrong.ParseJwtToken(tok["access_token"].(string)); err == nil {
				t.Fatal("verified with another key")
			}
		})
	}
}

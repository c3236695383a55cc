package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeKey writes a PKCS #8 private key as Apple hands it out (a .p8).
func writeKey(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "AuthKey.p8")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Provider presets: their refusals, each with its text, and the valid
// forms.
func TestProviderPresetsConfig(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	p8, rsaKey := writeKey(t, ec), writeKey(t, rk)
	block := func(body string) string { return "browser {\nprovider p {\nclient_id x\n" + body + "\n}\n}" }
	for _, c := range []struct{ config, err string }{
		{block("preset github\nissuer https://github.com"), "provider p: issuer and preset are mutually exclusive (the preset has its issuer built in)"},
		{block("preset gitlab"), `unknown provider preset "gitlab": one of github, google, microsoft, apple`},
		{block("preset github\npreset google"), "preset given twice"},
		{block("preset microsoft\ntenant contoso.onmicrosoft.com"), `browser provider p: tenant "contoso.onmicrosoft.com": use common, organizations, consumers or the tenant's id`},
		{block("preset google\ntenant common"), "tenant is a microsoft preset option"},
		{block("issuer https://idp.example\ntenant common"), "tenant, team_id, key_id and private_key_file go with a preset"},
		{block("preset apple\nteam_id T\nkey_id K"), "the apple preset needs team_id, key_id and private_key_file"},
		{block("preset apple\nteam_id T\nkey_id K\nprivate_key_file /nonexistent/AuthKey.p8"), "browser provider p: private_key_file: open /nonexistent/AuthKey.p8"},
		{block("preset apple\nteam_id T\nkey_id K\nprivate_key_file " + rsaKey), "an EC P-256 private key (Apple's .p8) is needed"},
		{block("preset apple\nteam_id T\nkey_id K\nclient_secret s\nprivate_key_file " + p8), "client_secret is not used"},
		{block("preset github\nteam_id T"), "apple preset options"},
		{`{"browser":{"providers":[{"name":"p","client_id":"x","preset":"github","issuer":"https://github.com"}]}}`, "issuer and preset are mutually exclusive"},
	} {
		err := checkConfig(c.config)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: err = %v, want it to contain %q", c.config, err, c.err)
		}
	}
	for _, ok := range []string{
		block("preset github\nclient_secret {env.GH_SECRET}\nlabel GitHub"),
		block("preset google\nclient_secret s"),
		block("preset microsoft"),
		block("preset microsoft\ntenant organizations"),
		block("preset microsoft\ntenant 72f988bf-86f1-41af-91ab-2d7cd011db47"),
		block("preset apple\nteam_id T\nkey_id K\nprivate_key_file " + p8 + "\nscopes name email"),
	} {
		if err := checkConfig(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

package caddymodule

import (
	"strings"
	"testing"
)

// The passkeys option: its refusals, each with its text, and what a
// valid one gives.
func TestPasskeysConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ config, err string }{
		{"browser {\npasskeys x\n}", "wrong argument count"},
		{"browser {\npasskeys {\nfrobnicate 1\n}\n}", `unknown passkeys option "frobnicate"`},
		{"browser {\npasskeys\npasskeys\n}", "passkeys given twice: at Testfile:3 and Testfile:4"},
		{"browser {\npasskeys {\nrp_id a.example\nrp_id b.example\n}\n}", "rp_id given twice: at Testfile:4 and Testfile:5"},
		{"browser {\npasskeys {\nrp_id 127.0.0.1\n}\n}", "browser passkeys: rp_id \"127.0.0.1\""},
		{"issuer https://app.example.com\nbrowser {\npasskeys {\nrp_id other.example\n}\n}", `browser passkeys: rp_id "other.example" must be the issuer's host "app.example.com" or a parent domain of it`},
		{"issuer https://app.example.com\nbrowser {\npasskeys {\nrp_id ple.com\n}\n}", `rp_id "ple.com" must be the issuer's host`},
		{`{"browser":{"passkeys":{"rp_id":"127.0.0.1"}}}`, "browser passkeys: rp_id \"127.0.0.1\""},
	} {
		err := checkConfig(c.config)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: err = %v, want it to contain %q", c.config, err, c.err)
		}
	}
	for _, ok := range []string{
		"browser {\npasskeys\n}",
		"issuer https://app.example.com\nbrowser {\npasskeys {\nrp_id example.com\n}\n}",
		"issuer https://app.example.com\nbrowser {\npasskeys {\nrp_id APP.example.com\n}\n}",
		"issuer http://localhost:8080\nbrowser {\npasskeys\n}",
		`{"browser":{"passkeys":{}}}`,
	} {
		if err := checkConfig(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

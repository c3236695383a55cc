package accounts

import (
	"strings"
	"testing"
)

// PKCE S256 (RFC 7636): the appendix B example, and what a verifier or a
// challenge may be.
func TestPKCE(t *testing.T) {
	const verifier, challenge = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	for _, c := range []struct {
		verifier, challenge string
		ok                  bool
	}{
		{verifier, challenge, true},
		{verifier, strings.ToLower(challenge), false},
		{verifier + "x", challenge, false},
		{verifier[:42], challenge, false},
		{challenge, challenge, false},                     // plain: the challenge is not its own verifier
		{strings.Repeat("a", 42), challenge, false},       // too short to be a verifier
		{strings.Repeat("a", 129), challenge, false},      // too long
		{strings.Repeat("a", 42) + "/", challenge, false}, // outside the alphabet
	} {
		if got := VerifierMatches(c.verifier, c.challenge); got != c.ok {
			t.Errorf("VerifierMatches(%q, %q) = %v", c.verifier, c.challenge, got)
		}
	}
	long := strings.Repeat("A1-._~", 22)[:128]
	if !pkceText(long) || pkceText(long+"A") {
		t.Error("128 characters are a verifier, 129 are not")
	}
	for s, ok := range map[string]bool{
		challenge:                     true,
		challenge[:42]:                false,
		challenge + "A":               false,
		strings.Repeat("~", 43):       false, // S256 output is base64url
		strings.Repeat("a.", 22)[:43]: false,
	} {
		if ValidChallenge(s) != ok {
			t.Errorf("ValidChallenge(%q) = %v", s, !ok)
		}
	}
}

// Handles are what newHandle makes: 43 base64url characters.
func TestFlowHandles(t *testing.T) {
	h, err := newHandle()
	if err != nil || !handleOK(h) {
		t.Fatalf("newHandle: %q %v", h, err)
	}
	for _, bad := range []string{"", h[:42], h + "A", strings.Repeat("+", 43), strings.Repeat("=", 43)} {
		if handleOK(bad) {
			t.Errorf("handleOK(%q)", bad)
		}
	}
}

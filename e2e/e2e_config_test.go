package e2e

import "testing"

// A config error stops Caddy from starting, with the reason in its log.
// The errors themselves are rows of TestConfigErrors and
// TestProvisionConfigErrors, checked in-process.
func TestConfigErrorStopsCaddy(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	if err := s.tryStart(s.siteConfig("client pub pub-secret {\n\t\t\tpublic\n\t\t}")); err == nil {
		t.Fatal("caddy started with a public client that has a secret")
	}
	if !s.HasLog(`client \"pub\" is public and cannot have a secret`) && !s.HasLog(`client "pub" is public and cannot have a secret`) {
		t.Fatalf("logs lack the reason:\n%s", s.Logs())
	}
}

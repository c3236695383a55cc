package internal_test

// The architecture's import rules, checked on the production code (test
// files are not: tests may open a real backend) with `go list`:
//
//   - internal/model (users, sessions, devices, keys, errors, the expiry
//     rule) imports the standard library only;
//   - internal/accounts, the Service, imports no net/http;
//   - internal/accounts, internal/protocol and internal/pages depend on no
//     storage backend, even indirectly: they reach the store only through
//     the interfaces the Service declares (the storage contract package is
//     allowed);
//   - only a backend imports its driver: go.etcd.io/bbolt only under
//     storage/bolt, pgx only under storage/postgres;
//   - the domain (model, accounts, tokens) and the storage contract
//     (storage, storagetest) depend on no Caddy: a backend's Caddy module
//     (guest_auth.storage.<kind>) lives in the backend's package, which may
//     import Caddy to register it.

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/guestauth/caddy-guestauth"

var (
	bbolt = []string{"go.etcd.io/bbolt"}
	pgx   = []string{"github.com/jackc/pgx", "github.com/jackc/pgconn", "github.com/jackc/pgtype"}
)

// goList runs `go list` in the module's root; each line of the template's
// output is one package.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = ".."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, stderr.String())
	}
	var lines []string
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// under reports whether pkg is dir (relative to the module) or inside it.
func under(pkg, dir string) bool {
	p := module + "/" + dir
	return pkg == p || strings.HasPrefix(pkg, p+"/")
}

func matches(pkg string, prefixes []string) bool {
	for _, p := range prefixes {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

// backends are the packages that implement storage.Backend, each the only
// importer of its driver.
var backends = []string{"storage/bolt", "storage/postgres"}

func TestModelImportsStandardLibraryOnly(t *testing.T) {
	for _, l := range goList(t, "-f", `{{join .Imports "\n"}}`, "./internal/model") {
		if first, _, _ := strings.Cut(l, "/"); strings.Contains(first, ".") {
			t.Errorf("internal/model imports %s: the domain model is standard library only", l)
		}
	}
}

func TestAccountsImportNoHTTP(t *testing.T) {
	for _, l := range goList(t, "-f", `{{join .Imports "\n"}}`, "./internal/accounts") {
		if l == "net/http" || strings.HasPrefix(l, "net/http/") {
			t.Errorf("internal/accounts imports %s: the Service knows nothing of HTTP", l)
		}
	}
}

// The Service and the HTTP sides reach no backend of ours, even
// indirectly. (Caddy itself pulls bbolt and pgx in through smallstep's
// nosql, so the drivers are checked by who imports them, below.)
func TestDomainAndProtocolsDependOnNoBackend(t *testing.T) {
	for _, pkg := range []string{"internal/accounts", "internal/protocol", "internal/pages"} {
		deps := goList(t, "-deps", "-f", "{{.ImportPath}}", "./"+pkg)
		if len(deps) < 2 {
			t.Fatalf("go list -deps %s: %v", pkg, deps)
		}
		for _, dep := range deps {
			for _, b := range backends {
				if under(dep, b) {
					t.Errorf("%s depends on the backend %s", pkg, dep)
				}
			}
		}
	}
}

func TestOnlyBackendsImportDrivers(t *testing.T) {
	lines := goList(t, "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	if len(lines) < 10 {
		t.Fatalf("go list ./...: only %d packages", len(lines))
	}
	for _, l := range lines {
		fields := strings.Fields(l)
		pkg := fields[0]
		for _, imp := range fields[1:] {
			if matches(imp, bbolt) && !under(pkg, "storage/bolt") {
				t.Errorf("%s imports %s: only storage/bolt may", pkg, imp)
			}
			if matches(imp, pgx) && !under(pkg, "storage/postgres") {
				t.Errorf("%s imports %s: only storage/postgres may", pkg, imp)
			}
		}
	}
}

// The storage contract defines the interface a storage module implements
// (storage.Module) without Caddy; only the backends register modules.
func TestDomainAndContractDependOnNoCaddy(t *testing.T) {
	for _, pkg := range []string{"internal/model", "internal/accounts", "internal/tokens", "storage", "storage/storagetest"} {
		deps := goList(t, "-deps", "-f", "{{.ImportPath}}", "./"+pkg)
		if len(deps) < 2 {
			t.Fatalf("go list -deps %s: %v", pkg, deps)
		}
		for _, dep := range deps {
			if matches(dep, []string{"github.com/caddyserver"}) {
				t.Errorf("%s depends on %s", pkg, dep)
			}
		}
	}
}

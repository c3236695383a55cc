// Command xcaddy-build builds a custom Caddy with guest_auth from the
// xcaddy.json build manifest, with xcaddy used as a library:
//
//	go run ./cmd/xcaddy-build [-manifest xcaddy.json] [-o caddy]
//	./caddy list-modules | grep guest_auth
//
// The manifest is the JSON form of xcaddy's Builder type (caddy_version,
// plugins, replacements, and optionally cgo, os, arch, build_flags, ...).
// Relative replacement paths such as "./" are resolved against the
// manifest's directory, so the command works from any working directory.
// caddy_version must equal the Caddy version this module's go.mod requires
// (the version it is tested with); the build refuses otherwise, since Go
// would silently pick the higher of the two.
//
// The same build with the xcaddy CLI, a tool dependency in go.mod:
//
//	go tool xcaddy build v2.11.9 \
//	    --with github.com/guestauth/caddy-guestauth/caddymodule \
//	    --replace github.com/guestauth/caddy-guestauth=./
//
// xcaddy builds in a temporary module, so it needs the Go module proxy (or
// a warm module cache) for Caddy and its dependencies. This command pins
// the locally replaced module in that build module, so the proxy is never
// asked about it; the CLI asks, which fails on a proxy that refuses unknown
// modules with 403 instead of 404 (there, set GOPROXY="<proxy>|off").
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/caddyserver/xcaddy"
)

const caddyModule = "github.com/caddyserver/caddy/v2"

func main() {
	manifest := flag.String("manifest", "xcaddy.json", "build manifest (JSON of xcaddy.Builder)")
	output := flag.String("o", "caddy", "path of the binary to write")
	flag.Parse()
	if flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}

	b, err := loadManifest(*manifest)
	if err != nil {
		log.Fatalf("[FATAL] %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b.OnStep = pinLocalModules(localModules(b), os.Stderr)
	if err := b.Build(ctx, *output); err != nil {
		log.Fatalf("[FATAL] build: %v", err)
	}
}

// loadManifest reads the manifest, resolves relative replacement paths
// against its directory and checks the Caddy version against go.mod.
func loadManifest(path string) (*xcaddy.Builder, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var b xcaddy.Builder
	dec := json.NewDecoder(bytes.NewReader(data))
	// A misspelt key would otherwise be dropped and build something else.
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if b.CaddyVersion == "" {
		return nil, fmt.Errorf("%s: caddy_version is required", path)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	for i, r := range b.Replacements {
		b.Replacements[i].New = xcaddy.ReplacementPath(resolveLocal(dir, string(r.New)))
	}
	want, err := goModCaddyVersion(filepath.Join(dir, "go.mod"))
	if err != nil {
		return nil, err
	}
	if want != "" && want != b.CaddyVersion {
		return nil, fmt.Errorf("%s: caddy_version %s differs from go.mod's %s %s; keep them equal", path, b.CaddyVersion, caddyModule, want)
	}
	return &b, nil
}

// resolveLocal makes a relative filesystem replacement absolute, relative
// to dir. Like xcaddy's CLI, a path starting with "." is a local path (no
// module path does); module@version replacements are left alone.
func resolveLocal(dir, repl string) string {
	if strings.HasPrefix(repl, ".") {
		return filepath.Join(dir, repl)
	}
	return repl
}

// localModules lists the modules that every version of is replaced by a
// local directory.
func localModules(b *xcaddy.Builder) []string {
	var mods []string
	for _, r := range b.Replacements {
		if !strings.ContainsAny(string(r.Old), " @") && filepath.IsAbs(string(r.New)) {
			mods = append(mods, string(r.Old))
		}
	}
	return mods
}

// pinLocalModules returns an OnStep callback that copies the build's output
// to w and makes the temporary build module require each module in mods at
// Go's zero pseudo-version. Go would pick that version itself, but only
// after asking the proxy for the module's versions; pinning it skips the
// query, so a module that exists only locally is never looked up (proxies
// that answer 403 rather than 404 for unknown modules fail the build) and
// a warm module cache builds offline.
func pinLocalModules(mods []string, w io.Writer) func(*xcaddy.StepEvent) error {
	var tempDir string
	return func(e *xcaddy.StepEvent) error {
		r := bufio.NewReader(e.Output)
		for {
			line, err := r.ReadString('\n')
			_, _ = io.WriteString(w, line) // progress output only
			if _, dir, ok := strings.Cut(line, "[INFO] Temporary folder: "); ok {
				tempDir = strings.TrimSpace(dir)
			}
			if err != nil {
				break // io.EOF: the step ended
			}
		}
		// The next step (go get) starts only once this callback returns.
		if e.Step != xcaddy.StepInitializeModule || len(mods) == 0 {
			return nil
		}
		if tempDir == "" {
			return errors.New("xcaddy did not log its temporary folder")
		}
		f, err := os.OpenFile(filepath.Join(tempDir, "go.mod"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		for _, m := range mods {
			fmt.Fprintf(f, "\nrequire %s %s\n", m, zeroPseudoVersion(m))
		}
		return f.Close()
	}
}

// zeroPseudoVersion is the version Go gives a module replaced without a
// version (module.ZeroPseudoVersion): vN for a /vN path, else v0.
func zeroPseudoVersion(mod string) string {
	major := "v0"
	if i := strings.LastIndex(mod, "/v"); i >= 0 {
		if n, err := strconv.Atoi(mod[i+2:]); err == nil && n >= 2 {
			major = mod[i+1:]
		}
	}
	return major + ".0.0-00010101000000-000000000000"
}

// goModCaddyVersion is the Caddy version required by the go.mod at path,
// or "" when there is no go.mod or it does not require Caddy.
func goModCaddyVersion(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "require" {
			f = f[1:]
		}
		if len(f) == 2 && f[0] == caddyModule {
			return f[1], nil
		}
	}
	return "", sc.Err()
}

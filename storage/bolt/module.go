package bolt

import (
	"context"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/storage"
)

func init() {
	caddy.RegisterModule(Module{})
}

// Module is the default store, kind `bolt` (Caddy module
// guest_auth.storage.bolt): an embedded bbolt file that one Caddy process
// uses at a time (it locks the file). Its webhook outbox, limits and locks
// are in the file too. Caddyfile: `storage <path>` or `storage bolt
// <path>`.
type Module struct {
	// Path of the bbolt file (placeholders allowed; relative to Caddy's
	// working directory). Default: `guest_auth/guestauth.db` in Caddy's
	// data directory.
	Path string `json:"path,omitempty"`

	abs string
}

var (
	_ storage.Module        = (*Module)(nil)
	_ caddy.Provisioner     = (*Module)(nil)
	_ caddyfile.Unmarshaler = (*Module)(nil)
)

// CaddyModule returns the Caddy module information.
func (Module) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: storage.ModuleNamespace + "." + storage.KindBolt, New: func() caddy.Module { return new(Module) }}
}

// Provision resolves the path.
func (m *Module) Provision(caddy.Context) error {
	path := caddy.NewReplacer().ReplaceKnown(m.Path, "")
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "guest_auth", "guestauth.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	m.abs = abs
	return nil
}

// StoreKey implements storage.Module: the file's absolute path.
func (m *Module) StoreKey() string { return m.abs }

// lockTimeout bounds the wait when another process holds the file.
const lockTimeout = 3 * time.Second

// OpenStore implements storage.Module.
func (m *Module) OpenStore(context.Context) (storage.Backend, error) {
	return Open(m.abs, Options{LockTimeout: lockTimeout})
}

// UnmarshalCaddyfile reads `bolt <path>`; a block after it is refused
// rather than ignored.
func (m *Module) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the kind
	if !d.AllArgs(&m.Path) {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("bolt storage takes no options (%q): only a path", d.Val())
	}
	return nil
}

package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/guestauth/caddy-guestauth/accounts"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/tokens"
)

// StorageConfig chooses the store. In JSON it is either a string, the path
// of a bbolt file, or an object naming the kind:
//
//	"storage": "/var/lib/caddy/guestauth.db"
//	"storage": {"kind": "bolt", "path": "/var/lib/caddy/guestauth.db"}
//
// In the Caddyfile: `storage <path>` or `storage bolt <path>`.
type StorageConfig struct {
	// Kind of store: `bolt` (the default), an embedded bbolt file that one
	// Caddy process uses at a time.
	Kind string `json:"kind,omitempty"`
	// Path of the bbolt file (placeholders allowed; relative to Caddy's
	// working directory). Default: `guest_auth/guestauth.db` in Caddy's data
	// directory.
	Path string `json:"path,omitempty"`
}

// MarshalJSON writes a bbolt store as the plain path string, the form every
// existing config uses.
func (c StorageConfig) MarshalJSON() ([]byte, error) {
	if c.Kind == "" || c.Kind == storage.KindBolt {
		return json.Marshal(c.Path)
	}
	type plain StorageConfig
	return json.Marshal(plain(c))
}

// UnmarshalJSON reads either form.
func (c *StorageConfig) UnmarshalJSON(b []byte) error {
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '"' {
		*c = StorageConfig{}
		return json.Unmarshal(b, &c.Path)
	}
	type plain StorageConfig
	var p plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return fmt.Errorf("storage: want a bbolt file path or {\"kind\": ..., \"path\": ...}: %w", err)
	}
	*c = StorageConfig(p)
	return nil
}

// resolve checks the config and makes the storage.Config to open.
func (c StorageConfig) resolve(repl *caddy.Replacer) (storage.Config, error) {
	kind := c.Kind
	if kind == "" {
		kind = storage.KindBolt
	}
	if kind != storage.KindBolt {
		return storage.Config{}, fmt.Errorf("unknown storage kind %q (known: %s)", c.Kind, strings.Join(storage.Kinds(), ", "))
	}
	path := repl.ReplaceKnown(c.Path, "")
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "guest_auth", "guestauth.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return storage.Config{}, err
	}
	return storage.Config{Kind: kind, Location: abs, LockTimeout: lockTimeout}, nil
}

// poolKey names an open store in storePool and in the admin API's storage
// parameter: a bbolt file by its absolute path, as before; other kinds as
// "<kind>:<location>".
func poolKey(cfg storage.Config) string {
	if cfg.Kind == storage.KindBolt {
		return cfg.Location
	}
	return cfg.Kind + ":" + cfg.Location
}

// store is what this package needs from a storage backend: what accounts
// and tokens need, plus what the admin API, the CLI and the pool use.
type store interface {
	accounts.Store
	accounts.ActivityStore
	accounts.SessionSweeper
	accounts.PruneStore
	tokens.KeyStore

	DeleteUser(ctx context.Context, id string) error
	ListUsers(ctx context.Context, after, tag string, limit int) (users []storage.User, next string, err error)
	Stats(ctx context.Context) (*storage.Stats, error)
	Backup(ctx context.Context, w io.Writer, size func(n int64)) (int64, error)
	Describe() string
	Close() error
}

// openStore opens the backend cfg names.
func openStore(ctx context.Context, cfg storage.Config) (store, error) {
	return storage.Open(ctx, cfg)
}

package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/outbox"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
	// The postgres storage module (guest_auth.storage.postgres) registers
	// itself: a build with this handler has both kinds.
	_ "github.com/guestauth/caddy-guestauth/storage/postgres"
)

// StorageConfig chooses the store: a module of the guest_auth.storage
// namespace, named by its kind (bolt.Module, postgres.Module: each backend
// registers its own). In JSON it is either a string, the path of a bbolt
// file, or the module's object:
//
//	"storage": "/var/lib/caddy/guestauth.db"
//	"storage": {"kind": "bolt", "path": "/var/lib/caddy/guestauth.db"}
//	"storage": {"kind": "postgres", "dsn": "{env.GUEST_AUTH_DATABASE_URL}", "max_conns": 8}
//
// (an object without kind is a bbolt one, as it always was). In the
// Caddyfile: `storage <path>` (one argument is always a bbolt file's
// path), or `storage <kind> ...`, whatever that kind reads:
// `storage bolt <path>`, `storage postgres <dsn> [{ ... }]`.
type StorageConfig struct {
	// BackendRaw is the store's module, {"kind": "...", its options}.
	BackendRaw json.RawMessage `json:"-" caddy:"namespace=guest_auth.storage inline_key=kind"`
}

// defaultStorage is the store of a config that names none: a bbolt file
// at the default path.
var defaultStorage = json.RawMessage(`{"kind":"bolt"}`)

// MarshalJSON writes a bbolt store of only a path as the plain path
// string, the form every existing config uses, and anything else as the
// module's object.
func (c StorageConfig) MarshalJSON() ([]byte, error) {
	if len(c.BackendRaw) == 0 {
		return []byte(`""`), nil
	}
	var plain struct {
		Kind string `json:"kind"`
		Path string `json:"path"`
	}
	dec := json.NewDecoder(bytes.NewReader(c.BackendRaw))
	dec.DisallowUnknownFields()
	if dec.Decode(&plain) == nil && plain.Kind == storage.KindBolt {
		return json.Marshal(plain.Path)
	}
	return c.BackendRaw, nil
}

// UnmarshalJSON reads either form, and refuses a kind no module provides.
func (c *StorageConfig) UnmarshalJSON(b []byte) error {
	*c = StorageConfig{}
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '"' {
		var path string
		if err := json.Unmarshal(b, &path); err != nil {
			return err
		}
		if path != "" {
			c.BackendRaw = caddyconfig.JSONModuleObject(bolt.Module{Path: path}, "kind", storage.KindBolt, nil)
		}
		return nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		return fmt.Errorf("storage: want a bbolt file path or {\"kind\": ..., ...}: %s", b)
	}
	kind := storage.KindBolt
	if raw, ok := obj["kind"]; ok {
		if err := json.Unmarshal(raw, &kind); err != nil {
			return fmt.Errorf("storage: kind: %w", err)
		}
	} else {
		obj["kind"], _ = json.Marshal(kind)
	}
	if _, err := caddy.GetModule(storage.ModuleNamespace + "." + kind); err != nil {
		return unknownKind(kind)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	c.BackendRaw = raw
	return nil
}

func unknownKind(kind string) error {
	var known []string
	for _, m := range caddy.GetModules(storage.ModuleNamespace) {
		known = append(known, m.ID.Name())
	}
	slices.Sort(known)
	return fmt.Errorf("unknown storage kind %q (known: %s)", kind, strings.Join(known, ", "))
}

// unmarshalCaddyfile reads the `storage` option, d at its name.
func (c *StorageConfig) unmarshalCaddyfile(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	seg := d.NextSegment()
	if len(seg) == 1 {
		*c = StorageConfig{BackendRaw: caddyconfig.JSONModuleObject(bolt.Module{Path: seg[0].Text}, "kind", storage.KindBolt, nil)}
		return nil
	}
	kind := seg[0].Text
	info, err := caddy.GetModule(storage.ModuleNamespace + "." + kind)
	if err != nil {
		return d.Err(unknownKind(kind).Error())
	}
	unm, ok := info.New().(caddyfile.Unmarshaler)
	if !ok {
		return d.Errf("storage kind %q has no Caddyfile syntax; configure it in JSON", kind)
	}
	if err := unm.UnmarshalCaddyfile(caddyfile.NewDispenser(seg)); err != nil {
		return err
	}
	*c = StorageConfig{BackendRaw: caddyconfig.JSONModuleObject(unm, "kind", kind, nil)}
	return nil
}

// load loads and provisions the store's module (the default store when
// none is configured).
func (c *StorageConfig) load(ctx caddy.Context) (storage.Module, error) {
	if len(c.BackendRaw) == 0 {
		c.BackendRaw = defaultStorage
	}
	mod, err := ctx.LoadModule(c, "BackendRaw")
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	sb, ok := mod.(storage.Module)
	if !ok {
		return nil, fmt.Errorf("storage: module %T is not a guest_auth store", mod)
	}
	return sb, nil
}

// store is what this package needs from a storage backend: what accounts,
// tokens and the outbox need, plus what the admin API, the CLI, the sweeps
// and the pool use. Every storage.Backend is one.
type store interface {
	accounts.Store
	accounts.ActivityStore
	accounts.SessionSweeper
	accounts.PruneStore
	accounts.LimitStore
	tokens.KeyStore
	outbox.Store
	sweepLocker

	ListUsers(ctx context.Context, after, tag string, limit int) (users []model.User, next string, err error)
	Stats(ctx context.Context) (*storage.Stats, error)
	Backup(ctx context.Context, w io.Writer, size func(n int64)) (int64, error)
	Describe() string
	Shared() bool
	Close() error
}

// Every backend is a store.
var _ store = storage.Backend(nil)

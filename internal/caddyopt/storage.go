package caddyopt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/storage"
	"github.com/guestauth/caddy-guestauth/storage/bolt"
)

// The `storage` option's forms (caddymodule.StorageConfig): a module of
// the guest_auth.storage namespace named by its kind, {"kind": ..., its
// options}; in JSON also a plain string, a bbolt file's path.

// BoltPath is the module object of a bbolt file at path.
func BoltPath(path string) json.RawMessage {
	return caddyconfig.JSONModuleObject(bolt.Module{Path: path}, "kind", storage.KindBolt, nil)
}

// MarshalStorage writes a bbolt store of only a path as the plain path
// string, the form every existing config uses, and anything else as the
// module's object.
func MarshalStorage(raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return []byte(`""`), nil
	}
	var plain struct {
		Kind string `json:"kind"`
		Path string `json:"path"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if dec.Decode(&plain) == nil && plain.Kind == storage.KindBolt {
		return json.Marshal(plain.Path)
	}
	return raw, nil
}

// UnmarshalStorage reads either JSON form into the module's object (nil
// for ""), and refuses a kind no module provides; an object without kind
// is a bbolt one.
func UnmarshalStorage(b []byte) (json.RawMessage, error) {
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '"' {
		var path string
		if err := json.Unmarshal(b, &path); err != nil || path == "" {
			return nil, err
		}
		return BoltPath(path), nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("storage: want a bbolt file path or {\"kind\": ..., ...}: %s", b)
	}
	kind := storage.KindBolt
	if raw, ok := obj["kind"]; ok {
		if err := json.Unmarshal(raw, &kind); err != nil {
			return nil, fmt.Errorf("storage: kind: %w", err)
		}
	} else {
		obj["kind"], _ = json.Marshal(kind)
	}
	if _, err := caddy.GetModule(storage.ModuleNamespace + "." + kind); err != nil {
		return nil, UnknownKind(kind)
	}
	return json.Marshal(obj)
}

// UnknownKind is the error for a storage kind no module provides.
func UnknownKind(kind string) error {
	var known []string
	for _, m := range caddy.GetModules(storage.ModuleNamespace) {
		known = append(known, m.ID.Name())
	}
	slices.Sort(known)
	return fmt.Errorf("unknown storage kind %q (known: %s)", kind, strings.Join(known, ", "))
}

// StorageCaddyfile reads the `storage` option, d at its name: `storage
// <path>` (one argument is always a bbolt file's path), or `storage <kind>
// ...`, whatever that kind's module reads.
func StorageCaddyfile(d *caddyfile.Dispenser) (json.RawMessage, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	seg := d.NextSegment()
	if len(seg) == 1 {
		return BoltPath(seg[0].Text), nil
	}
	kind := seg[0].Text
	info, err := caddy.GetModule(storage.ModuleNamespace + "." + kind)
	if err != nil {
		return nil, d.Err(UnknownKind(kind).Error())
	}
	unm, ok := info.New().(caddyfile.Unmarshaler)
	if !ok {
		return nil, d.Errf("storage kind %q has no Caddyfile syntax; configure it in JSON", kind)
	}
	if err := unm.UnmarshalCaddyfile(caddyfile.NewDispenser(seg)); err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "kind", kind, nil), nil
}

package caddymodule

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/guestauth/caddy-guestauth/internal/admin"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
	caddycmd.RegisterCommand(admin.Command())
}

// AdminAPI serves guest_auth's management routes (internal/admin: users,
// keep, revoke, prune, stats, backup, key rotation) on Caddy's admin
// endpoint, on the stores this process has open.
type AdminAPI struct{}

var _ caddy.AdminRouter = (*AdminAPI)(nil)

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.guest_auth",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a *AdminAPI) Routes() []caddy.AdminRoute { return admin.Routes(adminTarget) }

// adminTarget is the store the storage parameter names, with the newest
// config using it: the admin's writes go through that config's Service.
func adminTarget(path string) (admin.Target, error) {
	sh, err := adminStore(path)
	if err != nil {
		return admin.Target{}, err
	}
	t := admin.Target{Store: sh.store}
	if g := sh.handler(); g != nil {
		t.Site = &admin.Site{Accounts: g.svc, Prune: g.prune, RotateKey: func(ctx context.Context) (string, string, error) {
			kid, err := sh.keys.Rotate(ctx, g.alg)
			return kid, g.alg.String(), err
		}, GuestTTL: time.Duration(*g.GuestTTL)}
	}
	return t, nil
}

// adminStore finds the open store named by the storage parameter
// (admin.PickStore).
func adminStore(param string) (*sharedStore, error) {
	open := map[string]*sharedStore{}
	storePool.Range(func(k, v any) bool {
		open[k.(string)] = v.(*sharedStore)
		return true
	})
	key, err := admin.PickStore(slices.Collect(maps.Keys(open)), param)
	if err != nil {
		return nil, err
	}
	return open[key], nil
}

// Command caddy runs Caddy with its standard modules plus guest_auth.
//
//	go run ./cmd/caddy run --config Caddyfile.example
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/guestauth/caddy-guestauth/caddymodule"
)

func main() {
	caddycmd.Main()
}

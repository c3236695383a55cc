package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("guest_auth", parseCaddyfile)
	// After the other authentication handlers, before request_header and the
	// responders, so they all see the identity headers and placeholders.
	httpcaddyfile.RegisterDirectiveOrder("guest_auth", httpcaddyfile.After, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := &GuestAuth{helper: &h}
	err := g.UnmarshalCaddyfile(h.Dispenser)
	g.helper = nil
	return g, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	guest_auth [<matcher>] {
//	    storage               [bolt] <path>
//	    storage               postgres <dsn> {
//	        max_conns         <n>
//	        statement_timeout <duration>
//	        skip_migrate
//	        sync_interval     <duration>
//	        max_staleness     <duration>
//	    }
//	    issuer                <url>
//	    organization          <name>
//	    client                <client_id> [<client_secret>] {
//	        public
//	        guests            code|keypair|web... | both|none
//	        redirect_uri      <uri>...
//	        post_logout_redirect_uri <uri>...
//	        manage_users
//	    }
//	    cors_origins          <origin>...
//	    signing_alg           RS256|ES256|EdDSA
//	    access_token_lifetime <duration>
//	    session_idle_timeout  <duration>
//	    session_lifetime      <duration>
//	    clock_skew            <duration>
//	    require               none|any|user
//	    cookie                <name>
//	    header                user_id|user_name|user_tag|user_anonymous <Header-Name>
//	    token_cache_size      <n>
//	    signin_limit          account|device|hashes|ip <burst> <interval>
//	    max_sessions_per_user <n>
//	    guest_limit           ip|global <burst> <interval>
//	    name_change_limit     user|ip <burst> <interval>
//	    reserved_names        default|off|<name>...
//	    challenge_limit       ip|global <burst> <interval>
//	    ip_key_prefix         <ipv4 bits> <ipv6 bits>
//	    max_live_guests       <n>
//	    guest_ttl             <duration>
//	    sweep_interval        <duration>
//	    activity_flush_interval <duration>
//	    keep_header           <Header-Name>
//	    api_read_timeout      <duration>
//	    webhook               <url> <secret>
//	    assertion {
//	        header                <Header-Name>
//	        lifetime              <duration>
//	        audience              <aud>
//	    }
//	    browser {
//	        cookie_name           <name>
//	        pages_prefix          <path>
//	        site_name             <name>
//	        home                  <path or url>
//	        create_guest          <matcher>
//	        unconfirmed_guest_ttl <duration>
//	        templates             <dir>
//	        merged_header         <Header-Name>
//	    }
//	    email {
//	        smtp                  <host:port>
//	        from                  "<Name> <address>"
//	        username              <user>
//	        password              <secret>
//	        starttls              auto|always|never
//	        templates             <dir>
//	        limit                 address|ip <burst> <interval>
//	    }
//	}
//
// `client` may be repeated. Write secrets as `{env.NAME}` placeholders.
// A client's block is optional: `public` marks a client without a secret
// (such as a mobile app), `guests` says how it may create guests (default
// `both`, or `keypair` for a public client), `redirect_uri` and
// `post_logout_redirect_uri` (repeatable) register where the authorization
// and end-session endpoints may send visitors back, `manage_users` lets it
// use Casdoor's user API with its secret. `cors_origins` lines add up.
func (g *GuestAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		key := d.Val()
		switch key {
		case "storage":
			if err := g.Storage.unmarshalCaddyfile(d); err != nil {
				return err
			}
		case "issuer", "signing_alg", "require", "cookie", "organization":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			*map[string]*string{
				"issuer": &g.Issuer, "signing_alg": &g.SigningAlg,
				"require": &g.Require, "cookie": &g.Cookie, "organization": &g.Organization,
			}[key] = v
		case "cors_origins":
			origins := d.RemainingArgs()
			if len(origins) == 0 {
				return d.ArgErr()
			}
			g.CORSOrigins = append(g.CORSOrigins, origins...)
		case "access_token_lifetime", "session_idle_timeout", "session_lifetime", "sweep_interval", "activity_flush_interval", "api_read_timeout":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s: %v", key, err)
			}
			*map[string]*caddy.Duration{
				"access_token_lifetime": &g.AccessTokenLifetime, "session_idle_timeout": &g.SessionIdleTimeout,
				"session_lifetime": &g.SessionLifetime, "sweep_interval": &g.SweepInterval,
				"activity_flush_interval": &g.ActivityFlushInterval, "api_read_timeout": &g.APIReadTimeout,
			}[key] = caddy.Duration(dur)
		case "client":
			c, err := parseClient(d)
			if err != nil {
				return err
			}
			g.Clients = append(g.Clients, c)
		case "header":
			var which, name string
			if !d.AllArgs(&which, &name) {
				return d.ArgErr()
			}
			field, ok := map[string]*string{
				"user_id": &g.Headers.UserID, "user_name": &g.Headers.UserName,
				"user_tag": &g.Headers.UserTag, "user_anonymous": &g.Headers.UserAnonymous,
			}[which]
			if !ok {
				return d.Errf("unknown header %q (want user_id, user_name, user_tag or user_anonymous)", which)
			}
			*field = name
		case "signin_limit", "guest_limit", "name_change_limit", "challenge_limit":
			var which, burst, interval string
			if !d.AllArgs(&which, &burst, &interval) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(burst)
			if err != nil {
				return d.Errf("%s burst: %v", key, err)
			}
			dur, err := caddy.ParseDuration(interval)
			if err != nil {
				return d.Errf("%s interval: %v", key, err)
			}
			l := &RateLimit{Burst: n, Interval: caddy.Duration(dur)}
			targets := map[string]map[string]**RateLimit{
				"signin_limit":      {"account": &g.SignInAccountLimit, "device": &g.SignInDeviceLimit, "hashes": &g.SignInHashLimit, "ip": &g.SignInIPLimit},
				"guest_limit":       {"ip": &g.GuestLimitIP, "global": &g.GuestLimitGlobal},
				"name_change_limit": {"user": &g.NameChangeUserLimit, "ip": &g.NameChangeIPLimit},
				"challenge_limit":   {"ip": &g.ChallengeLimitIP, "global": &g.ChallengeLimitGlobal},
			}[key]
			target, ok := targets[which]
			if !ok {
				return d.Errf("%s: unknown limit %q", key, which)
			}
			*target = l
		case "ip_key_prefix":
			var v4, v6 string
			if !d.AllArgs(&v4, &v6) {
				return d.ArgErr()
			}
			var err error
			if g.IPPrefixV4, err = strconv.Atoi(v4); err != nil {
				return d.Errf("ip_key_prefix IPv4 bits: %v", err)
			}
			if g.IPPrefixV6, err = strconv.Atoi(v6); err != nil {
				return d.Errf("ip_key_prefix IPv6 bits: %v", err)
			}
		case "max_live_guests":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return d.Errf("max_live_guests: %v", err)
			}
			g.MaxLiveGuests = &n
		case "guest_ttl", "clock_skew":
			// Pointers: an explicit 0 (no expiry, no skew) differs from unset.
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil {
				return d.Errf("%s: %v", key, err)
			}
			cd := caddy.Duration(dur)
			*map[string]**caddy.Duration{"guest_ttl": &g.GuestTTL, "clock_skew": &g.ClockSkew}[key] = &cd
		case "reserved_names":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			// Repeated lines add up.
			g.ReservedNames = append(g.ReservedNames, names...)
		case "keep_header":
			if !d.AllArgs(&g.KeepHeader) {
				return d.ArgErr()
			}
		case "webhook":
			g.Webhook = new(Webhook)
			if !d.AllArgs(&g.Webhook.URL, &g.Webhook.Secret) {
				return d.ArgErr()
			}
		case "token_cache_size", "max_sessions_per_user":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := strconv.Atoi(v)
			if err != nil {
				return d.Errf("%s: %v", key, err)
			}
			*map[string]**int{"token_cache_size": &g.TokenCacheSize, "max_sessions_per_user": &g.MaxSessionsPerUser}[key] = &n
		case "assertion":
			if g.Assertion != nil {
				return d.Err("assertion is set twice")
			}
			a, err := parseAssertion(d)
			if err != nil {
				return err
			}
			g.Assertion = a
		case "email":
			if g.Email != nil {
				return d.Err("email is set twice")
			}
			e, err := parseEmail(d)
			if err != nil {
				return err
			}
			g.Email = e
		case "browser":
			if g.Browser != nil {
				return d.Err("browser is set twice")
			}
			b, err := parseBrowser(d, g.helper)
			if err != nil {
				return err
			}
			g.Browser = b
		default:
			return d.Errf("unknown guest_auth option %q", key)
		}
	}
	return nil
}

var _ caddyfile.Unmarshaler = (*GuestAuth)(nil)

// parseClient reads `client <id> [<secret>] [{ public; guests <how>...;
// manage_users }]`;
// Validate checks the combination.
func parseClient(d *caddyfile.Dispenser) (Client, error) {
	var c Client
	switch args := d.RemainingArgs(); len(args) {
	case 1:
		c.ClientID = args[0]
	case 2:
		c.ClientID, c.ClientSecret = args[0], args[1]
	default:
		return c, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch key := d.Val(); key {
		case "public":
			if d.NextArg() {
				return c, d.ArgErr()
			}
			c.Public = true
		case "guests":
			ways := d.RemainingArgs()
			if len(ways) == 0 {
				return c, d.ArgErr()
			}
			c.Guests = strings.Join(ways, " ")
		case "redirect_uri", "post_logout_redirect_uri":
			// Repeated lines add up.
			uris := d.RemainingArgs()
			if len(uris) == 0 {
				return c, d.ArgErr()
			}
			if key == "redirect_uri" {
				c.RedirectURIs = append(c.RedirectURIs, uris...)
			} else {
				c.PostLogoutRedirectURIs = append(c.PostLogoutRedirectURIs, uris...)
			}
		case "manage_users":
			if d.NextArg() {
				return c, d.ArgErr()
			}
			c.ManageUsers = true
		default:
			return c, d.Errf("unknown client option %q (want public, guests, redirect_uri, post_logout_redirect_uri or manage_users)", key)
		}
	}
	return c, nil
}

package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
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
//	        admins                <username>...
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
// use Casdoor's user API with its secret. `cors_origins` and
// `reserved_names` lines add up, and so do a browser block's
// `create_guest` lines; every other option may be given once per block (a
// second one is an error naming both lines).
func (g *GuestAuth) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	var opts caddyopt.Block // the single-valued options: each at most once
	for d.NextBlock(0) {
		var err error
		switch key := d.Val(); key {
		case "storage":
			if err = opts.Once(d, key); err == nil {
				err = g.Storage.unmarshalCaddyfile(d)
			}
		case "issuer":
			err = opts.String(d, &g.Issuer)
		case "organization":
			err = opts.String(d, &g.Organization)
		case "signing_alg":
			err = opts.String(d, &g.SigningAlg)
		case "require":
			err = opts.String(d, &g.Require)
		case "cookie":
			err = opts.String(d, &g.Cookie)
		case "keep_header":
			err = opts.String(d, &g.KeepHeader)
		case "access_token_lifetime":
			err = opts.Duration(d, &g.AccessTokenLifetime)
		case "session_idle_timeout":
			err = opts.Duration(d, &g.SessionIdleTimeout)
		case "session_lifetime":
			err = opts.Duration(d, &g.SessionLifetime)
		case "sweep_interval":
			err = opts.Duration(d, &g.SweepInterval)
		case "activity_flush_interval":
			err = opts.Duration(d, &g.ActivityFlushInterval)
		case "api_read_timeout":
			err = opts.Duration(d, &g.APIReadTimeout)
		// Pointers: an explicit 0 (no expiry, no skew, no cap, no cache)
		// differs from unset.
		case "clock_skew":
			err = opts.DurationPtr(d, &g.ClockSkew)
		case "guest_ttl":
			err = opts.DurationPtr(d, &g.GuestTTL)
		case "token_cache_size":
			err = opts.IntPtr(d, &g.TokenCacheSize)
		case "max_sessions_per_user":
			err = opts.IntPtr(d, &g.MaxSessionsPerUser)
		case "max_live_guests":
			err = opts.Int64Ptr(d, &g.MaxLiveGuests)
		case "header":
			err = g.Headers.unmarshalCaddyfile(d, &opts)
		case "signin_limit", "guest_limit", "name_change_limit", "challenge_limit":
			err = g.Limits.unmarshalCaddyfile(d, &opts)
		case "ip_key_prefix":
			err = g.unmarshalIPKeyPrefix(d, &opts)
		case "webhook":
			g.Webhook = new(Webhook)
			if err = opts.Once(d, key); err == nil && !d.AllArgs(&g.Webhook.URL, &g.Webhook.Secret) {
				err = d.ArgErr()
			}
		case "assertion":
			if err = opts.Once(d, key); err == nil {
				g.Assertion, err = parseAssertion(d)
			}
		case "email":
			if err = opts.Once(d, key); err == nil {
				g.Email, err = parseEmail(d)
			}
		case "browser":
			if err = opts.Once(d, key); err == nil {
				g.Browser, err = parseBrowser(d, g.helper)
			}
		// Repeatable: each line adds to the list.
		case "client":
			var c Client
			if c, err = parseClient(d); err == nil {
				g.Clients = append(g.Clients, c)
			}
		case "cors_origins":
			err = caddyopt.Append(d, &g.CORSOrigins)
		case "reserved_names":
			err = caddyopt.Append(d, &g.ReservedNames)
		default:
			err = d.Errf("unknown guest_auth option %q", key)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// unmarshalCaddyfile reads `header <which> <Header-Name>`: each header
// at most once.
func (h *HeaderNames) unmarshalCaddyfile(d *caddyfile.Dispenser, opts *caddyopt.Block) error {
	var which, name string
	if !d.AllArgs(&which, &name) {
		return d.ArgErr()
	}
	var field *string
	switch which {
	case "user_id":
		field = &h.UserID
	case "user_name":
		field = &h.UserName
	case "user_tag":
		field = &h.UserTag
	case "user_anonymous":
		field = &h.UserAnonymous
	default:
		return d.Errf("unknown header %q (want user_id, user_name, user_tag or user_anonymous)", which)
	}
	if err := opts.Once(d, "header "+which); err != nil {
		return err
	}
	*field = name
	return nil
}

// unmarshalIPKeyPrefix reads `ip_key_prefix <ipv4 bits> <ipv6 bits>`.
func (g *GuestAuth) unmarshalIPKeyPrefix(d *caddyfile.Dispenser, opts *caddyopt.Block) error {
	if err := opts.Once(d, d.Val()); err != nil {
		return err
	}
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
	return nil
}

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
	var opts caddyopt.Block
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch key := d.Val(); key {
		case "public":
			err = opts.Flag(d, &c.Public)
		case "manage_users":
			err = opts.Flag(d, &c.ManageUsers)
		case "guests":
			if err = opts.Once(d, key); err == nil {
				ways := d.RemainingArgs()
				c.Guests = strings.Join(ways, " ")
				if len(ways) == 0 {
					err = d.ArgErr()
				}
			}
		// Repeatable: each line adds to the list.
		case "redirect_uri":
			err = caddyopt.Append(d, &c.RedirectURIs)
		case "post_logout_redirect_uri":
			err = caddyopt.Append(d, &c.PostLogoutRedirectURIs)
		default:
			err = d.Errf("unknown client option %q (want public, guests, redirect_uri, post_logout_redirect_uri or manage_users)", key)
		}
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

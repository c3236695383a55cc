package caddymodule

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unsetEnv names an environment variable no test sets: a secret written as
// its placeholder resolves to nothing.
const unsetEnv = "{env.GUESTAUTH_TEST_NEVER_SET}"

// checkConfig runs what Caddy runs on a config, short of opening the store:
// the Caddyfile unmarshaler (or the JSON decoder when the config starts with
// "{"), the store-free part of Provision, and Validate. It returns the first
// error.
func checkConfig(config string) error {
	g := new(GuestAuth)
	if strings.HasPrefix(config, "{") {
		if err := json.Unmarshal([]byte(config), g); err != nil {
			return err
		}
	} else {
		if !strings.HasPrefix(config, "guest_auth") {
			config = "guest_auth {\n" + config + "\n}"
		}
		if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(config)); err != nil {
			return err
		}
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if _, err := g.prepare(ctx); err != nil {
		return err
	}
	return g.Validate()
}

// TestConfigErrors: every config error Caddy reports at load, with its
// text, one row each (formerly one Caddy process per error).
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	const argCount = "wrong argument count"
	for _, c := range []struct{ config, err string }{
		// The Caddyfile syntax.
		{"guest_auth extra", argCount},
		{"frobnicate 1", `unknown guest_auth option "frobnicate"`},
		// email
		{"email x", argCount},
		{"email {\nsmtp\n}", argCount},
		{"email {\nfrobnicate 1\n}", `unknown email option "frobnicate"`},
		{"email {\nsmtp a:25\nfrom a@example.com\n}\nemail {\nsmtp a:25\n}", "email given twice: at Testfile:2 and Testfile:6"},
		{"email {\nfrom a@example.com\n}", "email: smtp must be host:port"},
		{"email {\nsmtp mail.example.com\nfrom a@example.com\n}", "email: smtp must be host:port"},
		{"email {\nsmtp mail.example.com:x\nfrom a@example.com\n}", "email: bad smtp port"},
		{"email {\nsmtp mail.example.com:587\n}", "email: mail: from must be"},
		{"email {\nsmtp mail.example.com:587\nfrom \"Ex <nope\"\n}", "email: mail: from must be"},
		{"email {\nsmtp mail.example.com:587\nfrom a@example.com\nstarttls maybe\n}", "starttls must be auto, always or never"},
		{"email {\nsmtp mail.example.com:587\nfrom a@example.com\nlimit user 1 1m\n}", `unknown limit "user"`},
		{"email {\nsmtp mail.example.com:587\nfrom a@example.com\nlimit ip 0 1m\n}", "ip_limit needs a positive burst"},
		{`{"email": {"smtp": "mail.example.com:587", "from": "a@example.com", "starttls": "sometimes"}}`, "starttls must be"},
		{"email {\nsmtp mail.example.com:587\nfrom a@example.com\n}", "email needs browser"},
		// browser providers
		{"browser {\nprovider a {\nissuer https://a.example\nclient_id x\n}\nprovider a {\nissuer https://b.example\nclient_id y\n}\n}", `browser provider "a" is configured twice`},
		{"browser {\nprovider a/b {\nissuer https://a.example\nclient_id x\n}\n}", `browser provider name "a/b": use letters, digits, - and _`},
		{"browser {\nprovider a {\nclient_id x\n}\n}", `browser provider a: issuer "" is not an http(s) URL`},
		{"browser {\nprovider a {\nissuer https://a.example/?x=1\nclient_id x\n}\n}", `is not an http(s) URL without query or fragment`},
		{"browser {\nprovider a {\nissuer https://a.example\n}\n}", "browser provider a: client_id is required"},
		{`{"browser": {"providers": [{"name": "a", "issuer": "https://a.example"}]}}`, "browser provider a: client_id is required"},
		{"issuer", argCount},
		{"issuer https://a.example https://b.example", argCount},
		{"signing_alg", argCount},
		{"require", argCount},
		{"cookie a b", argCount},
		{"storage", argCount},
		{"storage bolt /a /b", argCount},
		{"storage mysql mysql://db/auth", `unknown storage kind "mysql"`},
		{"storage postgres x {\npool 3\n}", `unknown postgres storage option "pool"`},
		{"storage postgres {env.GUESTAUTH_TEST_NEVER_SET}", "postgres storage needs a dsn"},
		{"access_token_lifetime", argCount},
		{"access_token_lifetime soon", "access_token_lifetime: "},
		{"session_idle_timeout 1h 2h", argCount},
		{"session_idle_timeout later", "session_idle_timeout: "},
		{"session_lifetime forever", "session_lifetime: "},
		{"sweep_interval often", "sweep_interval: "},
		{"activity_flush_interval x", "activity_flush_interval: "},
		{"api_read_timeout x", "api_read_timeout: "},
		{"clock_skew", argCount},
		{"clock_skew a-bit", "clock_skew: "},
		{"guest_ttl x", "guest_ttl: "},
		{"token_cache_size many", "token_cache_size: "},
		{"max_sessions_per_user 1.5", "max_sessions_per_user: "},
		{"max_live_guests lots", "max_live_guests: "},
		{"max_live_guests", argCount},
		{"header user_id", argCount},
		{"header user_email X-Mail", `unknown header "user_email" (want user_id, user_name, user_tag or user_anonymous)`},
		{"signin_limit account 3", argCount},
		{"signin_limit browser 1 1m", `signin_limit: unknown limit "browser"`},
		{"signin_limit account x 1m", "signin_limit burst: "},
		{"guest_limit ip 1 soon", "guest_limit interval: "},
		{"guest_limit user 1 1m", `guest_limit: unknown limit "user"`},
		{"name_change_limit user 3", argCount},
		{"name_change_limit account 3 1m", `name_change_limit: unknown limit "account"`},
		{"challenge_limit both 1 1s", `challenge_limit: unknown limit "both"`},
		{"ip_key_prefix 24", argCount},
		{"ip_key_prefix x 64", "ip_key_prefix IPv4 bits: "},
		{"ip_key_prefix 24 y", "ip_key_prefix IPv6 bits: "},
		{"reserved_names", argCount},
		{"keep_header", argCount},
		{"keep_header A B", argCount},
		{"webhook https://hooks.example.com", argCount},
		{"client", argCount},
		{"client a b c", argCount},
		{"client x x-secret {\n public yes\n}", argCount},
		{"client x x-secret {\n private\n}", `unknown client option "private" (want public, guests, redirect_uri, post_logout_redirect_uri or manage_users)`},
		{"client x x-secret {\n manage_users yes\n}", argCount},
		{"organization", argCount},
		{"organization a b", argCount},
		{"cors_origins", argCount},
		{"client x x-secret {\n guests\n}", argCount},

		// Validation of the provisioned config.
		{"require admin", `require must be none, any or user, not "admin"`},
		{"signing_alg HS256", "HS256"},
		{"issuer ftp://auth.example.com", `issuer "ftp://auth.example.com" must be an absolute http(s) URL without query or fragment`},
		{"issuer https://auth.example.com/?tenant=1", "must be an absolute http(s) URL without query or fragment"},
		{"issuer /relative", "must be an absolute http(s) URL"},
		{`{"clients": [{"client_id": "", "client_secret": "s"}]}`, "a client needs a client_id"},
		{"client a a-secret\nclient a other-secret", `client "a" is configured twice`},
		{"client nosecret", `client "nosecret" has an empty secret (is its environment variable set?)`},
		{"client envless " + unsetEnv, `client "envless" has an empty secret`},
		{"client pub pub-secret {\n public\n}", `client "pub" is public and cannot have a secret`},
		{"client pub {\n public\n guests code\n}", `client "pub" is public, so it cannot create guests with code=guest-user (which needs a secret): use guests keypair, web or none`},
		{"client pub {\n public\n guests both\n}", "use guests keypair, web or none"},
		{"client pub {\n public\n guests web code\n}", "use guests keypair, web or none"},
		{"client pub {\n public\n}\nclient sometimes s-secret {\n guests sometimes\n}", `client "sometimes": guests must be code, keypair, web (or several of them), both or none, not "sometimes"`},
		{"client a a-secret {\n guests code none\n}", `client "a": guests none stands alone`},
		{"client pub {\n public\n manage_users\n}", `client "pub" is public: it cannot manage users (manage_users needs a secret)`},
		{"organization a/b", `organization "a/b" must be at most 100 characters, without / or spaces`},
		{"cors_origins *", `cors_origins: "*" is not allowed: name each origin`},
		{"cors_origins null", `cors_origins: "null" is not allowed`},
		{"cors_origins localhost:3000", `cors_origins: "localhost:3000" is not an origin: write scheme://host[:port]`},
		{"cors_origins https://app.example.com/path", "is not an origin"},
		{"cors_origins https://app.example.com/", `cors_origins: write "https://app.example.com/" as "https://app.example.com", as browsers send it`},
		{"cors_origins https://App.example.com:443", `write "https://App.example.com:443" as "https://app.example.com"`},
		{"cors_origins ftp://app.example.com", "is not an origin"},
		{"access_token_lifetime 30s", "access_token_lifetime must be between 1m and 24h"},
		{"access_token_lifetime 25h", "access_token_lifetime must be between 1m and 24h"},
		{"access_token_lifetime -1h", "access_token_lifetime must be between 1m and 24h"},
		{"session_idle_timeout 30m", "session_idle_timeout and session_lifetime must be at least access_token_lifetime"},
		{"access_token_lifetime 2h\nsession_lifetime 90m", "session_idle_timeout and session_lifetime must be at least access_token_lifetime"},
		{"clock_skew 6m", "clock_skew must be between 0 and 5m"},
		{"clock_skew -1s", "clock_skew must be between 0 and 5m"},
		{"signin_limit account -1 1m", "a limit needs a burst >= 0 and a positive interval"},
		{"signin_limit hashes 5 -1s", "a limit needs a burst >= 0 and a positive interval"},
		{"guest_limit ip 5 0s", "a limit needs a burst >= 0 and a positive interval"},
		{"name_change_limit ip -3 1m", "a limit needs a burst >= 0 and a positive interval"},
		{"challenge_limit global 1 0s", "a limit needs a burst >= 0 and a positive interval"},
		{"max_live_guests -1", "max_live_guests and guest_ttl cannot be negative"},
		{"guest_ttl -1h", "max_live_guests and guest_ttl cannot be negative"},
		{"sweep_interval -1m", "sweep_interval and activity_flush_interval must be positive"},
		{"activity_flush_interval -1s", "sweep_interval and activity_flush_interval must be positive"},
		{"reserved_names off acme", "reserved_names: names must be non-empty, and off must stand alone"},
		{"reserved_names default\nreserved_names off", "off must stand alone"},
		{`reserved_names " "`, "reserved_names: names must be non-empty"},
		{"ip_key_prefix 33 64", "ip_prefix_v4 must be between 1 and 32, ip_prefix_v6 between 1 and 128"},
		{"ip_key_prefix 32 129", "ip_prefix_v4 must be between 1 and 32, ip_prefix_v6 between 1 and 128"},
		{"ip_key_prefix -1 64", "ip_prefix_v4 must be between 1 and 32"},
		{"api_read_timeout -1s", "api_read_timeout cannot be negative"},
		{"token_cache_size -1", "token_cache_size cannot be negative"},
		{"max_sessions_per_user -1", "max_sessions_per_user cannot be negative"},
		{"header user_id X-A\nheader user_name x_a", "identity header names must be distinct and non-empty"},
		{"header user_tag X-Auth-User-Id", "identity header names must be distinct and non-empty"},
		{"header user_anonymous x.auth.user.name", "identity header names must be distinct and non-empty"},
		{`{"storage": {"kind": "mysql", "path": "mysql://db/auth"}}`, `unknown storage kind "mysql" (known: bolt, postgres)`},
		{`{"storage": {"kind": "postgres", "path": "postgres://db/auth"}}`, `guest_auth.storage.postgres: json: unknown field "path"`},
		{`{"storage": {"kind": "bolt", "dsn": "x"}}`, `guest_auth.storage.bolt: json: unknown field "dsn"`},
		{`{"storage": {"kind": "postgres", "dsn": "x", "max_conns": -1}}`, "cannot be negative"},
		{`{"storage": 42}`, "want a bbolt file path"},
	} {
		err := checkConfig(c.config)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q:\n got error %v\nwant one containing %q", c.config, err, c.err)
		}
	}
}

// TestCaddyfileRepeatedOptions: a single-valued option given twice in one
// block is refused, naming both lines (the block's first line is
// Testfile:1, so the config's first line is Testfile:2); the repeatable
// ones add up (TestConfigAccepted).
func TestCaddyfileRepeatedOptions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ config, err string }{
		{"issuer https://a.example\nrequire any\nissuer https://b.example", "issuer given twice: at Testfile:2 and Testfile:4"},
		{"signing_alg ES256\nsigning_alg EdDSA", "signing_alg given twice: at Testfile:2 and Testfile:3"},
		{"organization a\norganization b", "organization given twice: at Testfile:2 and Testfile:3"},
		{"require any\nrequire user", "require given twice: at Testfile:2 and Testfile:3"},
		{"cookie a\ncookie b", "cookie given twice: at Testfile:2 and Testfile:3"},
		{"storage /a.db\nstorage /b.db", "storage given twice: at Testfile:2 and Testfile:3"},
		{"storage bolt /a.db\nstorage postgres x", "storage given twice: at Testfile:2 and Testfile:3"},
		{"access_token_lifetime 1h\naccess_token_lifetime 2h", "access_token_lifetime given twice: at Testfile:2 and Testfile:3"},
		{"session_idle_timeout 1h\nsession_idle_timeout 2h", "session_idle_timeout given twice"},
		{"session_lifetime 1h\nsession_lifetime 2h", "session_lifetime given twice"},
		{"clock_skew 1s\nclock_skew 0s", "clock_skew given twice: at Testfile:2 and Testfile:3"},
		{"guest_ttl 1h\nguest_ttl 0", "guest_ttl given twice"},
		{"sweep_interval 1m\nsweep_interval 2m", "sweep_interval given twice"},
		{"activity_flush_interval 1m\nactivity_flush_interval 2m", "activity_flush_interval given twice"},
		{"api_read_timeout 1s\napi_read_timeout 2s", "api_read_timeout given twice"},
		{"token_cache_size 1\ntoken_cache_size 2", "token_cache_size given twice"},
		{"max_sessions_per_user 1\nmax_sessions_per_user 2", "max_sessions_per_user given twice"},
		{"max_live_guests 1\nmax_live_guests 2", "max_live_guests given twice"},
		{"ip_key_prefix 24 64\nip_key_prefix 32 64", "ip_key_prefix given twice: at Testfile:2 and Testfile:3"},
		{"keep_header A\nkeep_header B", "keep_header given twice"},
		{"webhook https://h.example/a s\nwebhook https://h.example/b s", "webhook given twice: at Testfile:2 and Testfile:3"},
		{"header user_id X-A\nheader user_name X-B\nheader user_id X-C", "header user_id given twice: at Testfile:2 and Testfile:4"},
		{"signin_limit account 1 1m\nsignin_limit ip 1 1m\nsignin_limit account 2 1m", "signin_limit account given twice: at Testfile:2 and Testfile:4"},
		{"guest_limit ip 1 1m\nguest_limit ip 2 1m", "guest_limit ip given twice"},
		{"name_change_limit user 1 1m\nname_change_limit user 2 1m", "name_change_limit user given twice"},
		{"challenge_limit global 1 1s\nchallenge_limit global 2 1s", "challenge_limit global given twice"},
		{"assertion\nassertion {\nheader X-A\n}", "assertion given twice: at Testfile:2 and Testfile:3"},
		{"email {\nsmtp a:25\n}\nemail {\nsmtp b:25\n}", "email given twice: at Testfile:2 and Testfile:5"},
		{"email {\nsmtp a:25\nfrom a@example.com\nsmtp b:25\n}", "smtp given twice: at Testfile:3 and Testfile:5"},
		{"email {\nfrom a@example.com\nfrom b@example.com\n}", "from given twice"},
		{"email {\nstarttls always\nstarttls never\n}", "starttls given twice"},
		{"email {\nlimit ip 1 1m\nlimit address 1 1m\nlimit ip 2 1m\n}", "limit ip given twice: at Testfile:3 and Testfile:5"},
		{"assertion {\nheader X-A\nlifetime 10s\nheader X-B\n}", "header given twice: at Testfile:3 and Testfile:5"},
		{"assertion {\nlifetime 10s\nlifetime 20s\n}", "lifetime given twice: at Testfile:3 and Testfile:4"},
		{"assertion {\naudience a\naudience b\n}", "audience given twice"},
		{"browser\nbrowser", "browser given twice: at Testfile:2 and Testfile:3"},
		{"browser {\ncookie_name a\ncookie_name b\n}", "cookie_name given twice: at Testfile:3 and Testfile:4"},
		{"browser {\npages_prefix /a/\npages_prefix /b/\n}", "pages_prefix given twice"},
		{"browser {\nsite_name A\nsite_name B\n}", "site_name given twice"},
		{"browser {\nhome /a\nhome /b\n}", "home given twice"},
		{"browser {\ntemplates /a\ntemplates /b\n}", "templates given twice"},
		{"browser {\nmerged_header X-A\nmerged_header X-B\n}", "merged_header given twice"},
		{"browser {\ncookie_secure always\ncookie_secure never\n}", "cookie_secure given twice"},
		{"browser {\nunconfirmed_guest_ttl 1h\nunconfirmed_guest_ttl 0\n}", "unconfirmed_guest_ttl given twice: at Testfile:3 and Testfile:4"},
		// browser providers
		{"browser {\nprovider\n}", "provider needs a name"},
		{"browser {\nprovider a b\n}", "wrong argument count"},
		{"browser {\nprovider a {\nfrobnicate 1\n}\n}", `unknown provider option "frobnicate"`},
		{"browser {\nprovider a {\nissuer https://a.example\nissuer https://b.example\n}\n}", "issuer given twice: at Testfile:4 and Testfile:5"},
		{"browser {\nprovider a {\nclient_id x\nclient_id y\n}\n}", "client_id given twice"},
		{"browser {\nprovider a {\nclient_secret x\nclient_secret y\n}\n}", "client_secret given twice"},
		{"browser {\nprovider a {\nlabel x\nlabel y\n}\n}", "label given twice"},
		{"browser {\nprovider a {\nscopes openid\nscopes email\n}\n}", "scopes given twice"},
		{"browser {\nprovider a {\nscopes\n}\n}", "wrong argument count"},
		{"client a {\npublic\npublic\n}", "public given twice: at Testfile:3 and Testfile:4"},
		{"client a s {\nguests code\nguests keypair\n}", "guests given twice: at Testfile:3 and Testfile:4"},
		{"client a s {\nmanage_users\nmanage_users\n}", "manage_users given twice"},
		{"storage postgres x {\nmax_conns 3\nmax_conns 4\n}", "max_conns given twice: at Testfile:3 and Testfile:4"},
		{"storage postgres x {\nstatement_timeout 1s\nstatement_timeout 2s\n}", "statement_timeout given twice"},
		{"storage postgres x {\nsync_interval 1s\nsync_interval 2s\n}", "sync_interval given twice"},
		{"storage postgres x {\nmax_staleness 1s\nmax_staleness 2s\n}", "max_staleness given twice"},
		{"storage postgres x {\nskip_migrate\nskip_migrate\n}", "skip_migrate given twice: at Testfile:3 and Testfile:4"},
		// A bbolt store has no options: a block is refused, not ignored.
		{"storage bolt /a.db {\nmax_conns 3\n}", "bolt storage takes no options"},
	} {
		err := new(GuestAuth).UnmarshalCaddyfile(caddyfile.NewTestDispenser("guest_auth {\n" + c.config + "\n}"))
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q:\n got error %v\nwant one containing %q", c.config, err, c.err)
		}
	}
}

// TestConfigAccepted: the limits of the ranges TestConfigErrors refuses
// are accepted, so the rows there fail for the reason they name.
func TestConfigAccepted(t *testing.T) {
	t.Parallel()
	for _, config := range []string{
		"",
		"browser {\nprovider a-1_B {\nissuer http://localhost:9/\nclient_id x\nclient_secret " + unsetEnv + "\nscopes email\nlabel \"A B\"\n}\nprovider b {\nissuer https://b.example\nclient_id y\n}\n}",
		"client pub {\n public\n guests none\n}",
		"client pub {\n public\n guests keypair\n}",
		"client pub {\n public\n guests web\n}\nclient all all-secret {\n guests code keypair web\n manage_users\n}",
		"organization acme\ncors_origins http://localhost:3000 https://[::1]:8443\ncors_origins https://app.example.com",
		"client pub {\n public\n}\nclient web web-secret {\n guests code\n}\nclient both both-secret {\n guests both\n}",
		"access_token_lifetime 1m\nsession_idle_timeout 1m\nsession_lifetime 1m",
		"access_token_lifetime 24h",
		"clock_skew 0s",
		"clock_skew 5m",
		"signin_limit account 0 0s\nguest_limit global 0 0s",
		"max_live_guests 0\nguest_ttl 0\ntoken_cache_size 0\nmax_sessions_per_user 0\napi_read_timeout 0s",
		"reserved_names off",
		"reserved_names default acme",
		"ip_key_prefix 1 1",
		"ip_key_prefix 32 128",
		// The repeatable options add up.
		"client a a-secret {\n redirect_uri https://a.example/1\n redirect_uri https://a.example/2\n post_logout_redirect_uri https://a.example/\n post_logout_redirect_uri https://a.example/bye\n}\nclient b b-secret\nbrowser",
		"reserved_names default\nreserved_names acme",
		"header user_id X-A\nheader user_name X-B\nsignin_limit account 1 1m\nsignin_limit ip 1 1m",
		"header user_id X-User\nheader user_name X-User-Name\nheader user_tag X-User-Tag\nheader user_anonymous X-User-Anon",
		"issuer https://auth.example.com/tenant/",
		"signing_alg EdDSA",
		"storage bolt /tmp/x.db",
		"keep_header x-keep\ncookie app_token\nrequire user",
		`{"storage": {"kind": "bolt", "path": "/tmp/x.db"}}`,
		`{"storage": {"path": "/tmp/x.db"}}`,
		`{"storage": "/tmp/x.db"}`,
		// A shared store without an issuer is refused once it is open
		// (storage.Backend.Shared; e2e_postgres_test.go), not here.
		"storage postgres postgres://db/auth {\nmax_conns 3\n}",
		`{"storage": {"kind": "postgres", "dsn": "postgres://db/auth", "skip_migrate": true}}`,
	} {
		if err := checkConfig(config); err != nil {
			t.Errorf("%q: %v", config, err)
		}
	}
}

// provisionConfig provisions a handler from a Caddyfile block in ctx, as
// Caddy does (Provision, then Validate; Cleanup when either fails or when
// the test ends), after the setup functions (such as setting a clock). storage, signing_alg ES256 (fast keys) and a client are
// added unless the block sets them.
func provisionConfig(t *testing.T, ctx caddy.Context, dir, block string, setup ...func(*GuestAuth)) (*GuestAuth, error) {
	t.Helper()
	for _, def := range []string{"storage " + filepath.Join(dir, "guestauth.db"), "signing_alg ES256", "client app app-secret"} {
		if !strings.Contains(block, strings.Fields(def)[0]+" ") {
			block = def + "\n" + block
		}
	}
	g := new(GuestAuth)
	if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("guest_auth {\n" + block + "\n}")); err != nil {
		return nil, err
	}
	for _, f := range setup {
		f(g)
	}
	err := g.Provision(ctx)
	if err == nil {
		err = g.Validate()
	}
	if err != nil {
		g.Cleanup()
		return nil, err
	}
	t.Cleanup(func() { g.Cleanup() })
	return g, nil
}

func newTestContext(t *testing.T) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

// TestProvisionConfigErrors: the config errors found only when the store
// and the webhook are set up, provisioned in this process.
func TestProvisionConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ config, err string }{
		// Events would travel readable.
		{"webhook http://hooks.example.com/guestauth hook-secret", "must be https unless the host is loopback"},
		{"webhook http://10.0.0.5:8080/hook hook-secret", "must be https unless the host is loopback"},
		{"webhook ftp://hooks.example.com/x hook-secret", "scheme must be https (or http to a loopback host)"},
		{"webhook https:///x hook-secret", "missing host"},
		{"webhook https://hooks.example.com/x " + unsetEnv, "webhook secret is required"},
		// A Standard Webhooks secret that is not one: refused, never taken
		// for a plain secret, and the error does not show it.
		{"webhook https://hooks.example.com/x whsec_not-base64-at-all", "whsec_ must be followed by standard base64"},
		{"webhook https://hooks.example.com/x whsec_", "no key after whsec_"},
	} {
		_, err := provisionConfig(t, newTestContext(t), t.TempDir(), c.config)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q:\n got error %v\nwant one containing %q", c.config, err, c.err)
		}
		if err != nil && strings.Contains(err.Error(), "not-base64-at-all") {
			t.Errorf("%q: the error shows the secret: %v", c.config, err)
		}
	}
	// Control: https anywhere, and http to loopback, are accepted.
	for _, ok := range []string{
		"webhook https://hooks.example.com/guestauth hook-secret",
		"webhook http://localhost:9/hook hook-secret",
		"webhook http://127.0.0.1:9/hook hook-secret",
		"webhook http://[::1]:9/hook hook-secret",
		"webhook https://hooks.example.com/x whsec_c2VjcmV0LWtleS1vZi1hdC1sZWFzdC0yNC1ieXRlcw==",
		"webhook https://hooks.example.com/x whsec_c2VjcmV0LWtleS1vZi1hdC1sZWFzdC0yNC1ieXRlcw",
	} {
		if _, err := provisionConfig(t, newTestContext(t), t.TempDir(), ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// TestSharedStoreNeedsIssuers: two handlers of one config on one storage
// file share signing keys, so each must set its issuer; the refusal says
// what to do. (The e2e TestSitesSharingAStoreNeedIssuers checks that
// tokens then stay at their own site.)
func TestSharedStoreNeedsIssuers(t *testing.T) {
	t.Parallel()
	for _, c := range [][2]string{
		{"", ""},
		{"issuer http://a.example", ""},
		{"", "issuer http://b.example"},
	} {
		ctx, dir := newTestContext(t), t.TempDir()
		if _, err := provisionConfig(t, ctx, dir, c[0]); err != nil {
			t.Fatalf("first site %q: %v", c[0], err)
		}
		_, err := provisionConfig(t, ctx, dir, c[1])
		if err == nil || !strings.Contains(err.Error(), "set issuer in each") {
			t.Errorf("sites %q: got %v, want the set-issuer refusal", c, err)
		}
	}
	// With an issuer each they provision; so do two configs (a reload) on
	// one file without issuers.
	ctx, dir := newTestContext(t), t.TempDir()
	for _, iss := range []string{"issuer http://a.example", "issuer http://b.example"} {
		if _, err := provisionConfig(t, ctx, dir, iss); err != nil {
			t.Fatalf("%s: %v", iss, err)
		}
	}
	dir = t.TempDir()
	for range 2 {
		if _, err := provisionConfig(t, newTestContext(t), dir, ""); err != nil {
			t.Fatalf("a reload on one file: %v", err)
		}
	}
}

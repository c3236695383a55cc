package caddymodule

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
)

// Limits are the rate limits, each a token bucket (RateLimit); a burst of
// 0 disables one. In the Caddyfile: `signin_limit account|device|hashes|ip
// <burst> <interval>`, `guest_limit ip|global ...`, `name_change_limit
// user|ip ...` and `challenge_limit ip|global ...` set
// signin_account ... challenge_global.
//
// Every per-IP limit counts the client's network (ip_prefix_v4,
// ip_prefix_v6). With a PostgreSQL store signin_account, signin_hashes and
// guest_global are kept in the database and hold across every Caddy using
// it; the others stay per process, so N nodes allow N times them.
type Limits struct {
	// Password sign-ins allowed per account name from clients without a
	// valid device token, at once, then one more per interval. An attempt
	// counts from when it starts (so concurrent guesses cannot overrun it);
	// a failure stays counted and a success gives the budget back. Failures
	// from every address add up here. Default: 5, 1m. Kept in the database
	// with a PostgreSQL store (cluster-wide).
	SignInAccount *RateLimit `json:"signin_account,omitempty"`

	// The same for each client holding a device token (the `device_token`
	// returned by an earlier successful sign-in to the account, sent back
	// with the password grant), instead of the account's: failures from
	// elsewhere cannot lock it out. The same budget bounds each session's
	// `oldPassword` checks, so failed sign-ins cannot block a signed-in
	// owner's password change. Default: 5, 1m.
	SignInDevice *RateLimit `json:"signin_device,omitempty"`

	// Password hashes allowed per account name whatever the outcome:
	// sign-ins with or without a device token, `oldPassword` checks and new
	// passwords. It bounds the work and the sessions a known password can
	// buy. Keep its burst and rate above signin_account's, so guesses
	// without a device token cannot use it up. Default: 10, 20s. Kept in
	// the database with a PostgreSQL store (cluster-wide).
	SignInHashes *RateLimit `json:"signin_hashes,omitempty"`

	// Password hashes allowed per client IP (Caddy's client IP, which
	// honours the server's trusted_proxies) whatever the outcome, counted
	// like signin_hashes. Default: 20, 10s. Per Caddy process.
	SignInIP *RateLimit `json:"signin_ip,omitempty"`

	// Guest creations allowed per client IP at once, then one more per
	// interval. Default: 30, 1m (about 60 an hour sustained). Per Caddy
	// process.
	GuestIP *RateLimit `json:"guest_ip,omitempty"`

	// Guest creations allowed for the whole site at once, then one more per
	// interval. Default: 100, 100ms (10 a second sustained, 36000 an hour).
	// Kept in the database with a PostgreSQL store, so it is the whole
	// cluster's.
	GuestGlobal *RateLimit `json:"guest_global,omitempty"`

	// Username changes allowed per user at once, then one more per
	// interval (429 beyond). Every attempt counts, refused ones included,
	// so answering 409 for a taken name cannot be used to list which names
	// exist. Default: 5, 2m (5 per 10 minutes).
	NameChangeUser *RateLimit `json:"name_change_user,omitempty"`

	// The same per client IP, across users (many guests from one address).
	// Default: 30, 20s (30 per 10 minutes, enough for a class signing up
	// behind one NAT at once).
	NameChangeIP *RateLimit `json:"name_change_ip,omitempty"`

	// Store writes an unauthenticated visitor causes, allowed per client
	// IP at once, then one more per interval: device challenges (POST
	// /oauth2/challenge) and authorization requests stored while the
	// visitor signs in (GET /oauth/authorize without a session).
	// Default: 60, 1s.
	ChallengeIP *RateLimit `json:"challenge_ip,omitempty"`

	// The same for the whole site. Default: 200, 50ms (20 a second
	// sustained).
	ChallengeGlobal *RateLimit `json:"challenge_global,omitempty"`
}

// flatLimits are the limits' JSON names before they were grouped in
// `limits` (deprecated; Limits.each pairs them), still read: each fills
// its limit when `limits` leaves it unset, and a limit given both ways is
// a config error.
type flatLimits struct {
	FlatSignInAccount   *RateLimit `json:"signin_account_limit,omitempty"`
	FlatSignInDevice    *RateLimit `json:"signin_device_limit,omitempty"`
	FlatSignInHashes    *RateLimit `json:"signin_hash_limit,omitempty"`
	FlatSignInIP        *RateLimit `json:"signin_ip_limit,omitempty"`
	FlatGuestIP         *RateLimit `json:"guest_limit_ip,omitempty"`
	FlatGuestGlobal     *RateLimit `json:"guest_limit_global,omitempty"`
	FlatNameChangeUser  *RateLimit `json:"name_change_user_limit,omitempty"`
	FlatNameChangeIP    *RateLimit `json:"name_change_ip_limit,omitempty"`
	FlatChallengeIP     *RateLimit `json:"challenge_limit_ip,omitempty"`
	FlatChallengeGlobal *RateLimit `json:"challenge_limit_global,omitempty"`
}

// RateLimit is a token bucket: Burst at once, then one per Interval.
type RateLimit struct {
	Burst    int            `json:"burst"`
	Interval caddy.Duration `json:"interval"`
}

func (l *RateLimit) limit() accounts.Limit {
	return accounts.Limit{Burst: l.Burst, Interval: time.Duration(l.Interval)}
}

type limitField struct {
	name, flatName string
	group, flat    **RateLimit
}

// each lists every limit with its JSON name in `limits` and its flat
// JSON name.
func (l *Limits) each(flat *flatLimits) []limitField {
	return []limitField{
		{"signin_account", "signin_account_limit", &l.SignInAccount, &flat.FlatSignInAccount},
		{"signin_device", "signin_device_limit", &l.SignInDevice, &flat.FlatSignInDevice},
		{"signin_hashes", "signin_hash_limit", &l.SignInHashes, &flat.FlatSignInHashes},
		{"signin_ip", "signin_ip_limit", &l.SignInIP, &flat.FlatSignInIP},
		{"guest_ip", "guest_limit_ip", &l.GuestIP, &flat.FlatGuestIP},
		{"guest_global", "guest_limit_global", &l.GuestGlobal, &flat.FlatGuestGlobal},
		{"name_change_user", "name_change_user_limit", &l.NameChangeUser, &flat.FlatNameChangeUser},
		{"name_change_ip", "name_change_ip_limit", &l.NameChangeIP, &flat.FlatNameChangeIP},
		{"challenge_ip", "challenge_limit_ip", &l.ChallengeIP, &flat.FlatChallengeIP},
		{"challenge_global", "challenge_limit_global", &l.ChallengeGlobal, &flat.FlatChallengeGlobal},
	}
}

// adoptFlat moves the limits given under their flat JSON names into the
// group; one given both ways is refused.
func (l *Limits) adoptFlat(flat *flatLimits) error {
	for _, f := range l.each(flat) {
		switch {
		case *f.flat == nil:
		case *f.group != nil:
			return fmt.Errorf("limits.%s and %s are both set: keep limits.%s (%s is its former name)", f.name, f.flatName, f.name, f.flatName)
		default:
			*f.group, *f.flat = *f.flat, nil
		}
	}
	return nil
}

// setDefaults sets the unset limits to their defaults.
func (l *Limits) setDefaults() {
	limitDefault(&l.SignInAccount, 5, time.Minute)
	limitDefault(&l.SignInDevice, 5, time.Minute)
	limitDefault(&l.SignInHashes, 10, 20*time.Second)
	limitDefault(&l.SignInIP, 20, 10*time.Second)
	limitDefault(&l.GuestIP, 30, time.Minute)
	limitDefault(&l.GuestGlobal, 100, 100*time.Millisecond)
	limitDefault(&l.NameChangeUser, 5, 2*time.Minute)
	limitDefault(&l.NameChangeIP, 30, 20*time.Second)
	limitDefault(&l.ChallengeIP, 60, time.Second)
	limitDefault(&l.ChallengeGlobal, 200, 50*time.Millisecond)
}

// limitDefault sets an unset limit to burst, then one per every.
func limitDefault(l **RateLimit, burst int, every time.Duration) {
	newDefault(l, RateLimit{Burst: burst, Interval: caddy.Duration(every)})
}

// validate checks every limit (after setDefaults).
func (l *Limits) validate() error {
	for _, f := range l.each(new(flatLimits)) {
		if r := *f.group; r.Burst < 0 || (r.Burst > 0 && r.Interval <= 0) {
			return fmt.Errorf("a limit needs a burst >= 0 and a positive interval (limits.%s)", f.name)
		}
	}
	return nil
}

// field is the limit a Caddyfile line names (`signin_limit account`), or
// nil.
func (l *Limits) field(directive, which string) **RateLimit {
	switch directive + " " + which {
	case "signin_limit account":
		return &l.SignInAccount
	case "signin_limit device":
		return &l.SignInDevice
	case "signin_limit hashes":
		return &l.SignInHashes
	case "signin_limit ip":
		return &l.SignInIP
	case "guest_limit ip":
		return &l.GuestIP
	case "guest_limit global":
		return &l.GuestGlobal
	case "name_change_limit user":
		return &l.NameChangeUser
	case "name_change_limit ip":
		return &l.NameChangeIP
	case "challenge_limit ip":
		return &l.ChallengeIP
	case "challenge_limit global":
		return &l.ChallengeGlobal
	}
	return nil
}

// unmarshalCaddyfile reads `<directive> <which> <burst> <interval>`: each
// limit at most once.
func (l *Limits) unmarshalCaddyfile(d *caddyfile.Dispenser, opts *caddyopt.Block) error {
	key := d.Val()
	var which, burst, interval string
	if !d.AllArgs(&which, &burst, &interval) {
		return d.ArgErr()
	}
	target := l.field(key, which)
	if target == nil {
		return d.Errf("%s: unknown limit %q", key, which)
	}
	if err := opts.Once(d, key+" "+which); err != nil {
		return err
	}
	n, err := strconv.Atoi(burst)
	if err != nil {
		return d.Errf("%s burst: %v", key, err)
	}
	dur, err := caddy.ParseDuration(interval)
	if err != nil {
		return d.Errf("%s interval: %v", key, err)
	}
	*target = &RateLimit{Burst: n, Interval: caddy.Duration(dur)}
	return nil
}

// Package caddyopt reads the options of guest_auth's Caddyfile blocks (the
// handler's, its client, assertion and browser blocks, the storage
// modules'). A Block remembers where each single-valued option was given,
// so one given twice is refused with both places named, not silently
// overwritten by the second.
package caddyopt

import (
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// Block is one Caddyfile block's record of its single-valued options:
// the zero value is ready to use, one per block.
type Block struct {
	seen map[string]string // option → "file:line" where it was first given
}

// Once records the single-valued option name (the dispenser at its
// token); given before in this block, it is an error naming both lines.
// Options with a sub-key (`header user_id`, `signin_limit account`) are
// named with it.
func (b *Block) Once(d *caddyfile.Dispenser, name string) error {
	here := fmt.Sprintf("%s:%d", d.File(), d.Line())
	if first, ok := b.seen[name]; ok {
		return fmt.Errorf("%s given twice: at %s and %s", name, first, here)
	}
	if b.seen == nil {
		b.seen = map[string]string{}
	}
	b.seen[name] = here
	return nil
}

// String reads a single-valued option of one argument into v.
func (b *Block) String(d *caddyfile.Dispenser, v *string) error {
	if err := b.Once(d, d.Val()); err != nil {
		return err
	}
	if !d.AllArgs(v) {
		return d.ArgErr()
	}
	return nil
}

// Append reads a repeatable option (at least one argument) and adds its
// arguments to list.
func Append(d *caddyfile.Dispenser, list *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*list = append(*list, args...)
	return nil
}

// Flag reads a single-valued option without arguments: it sets v.
func (b *Block) Flag(d *caddyfile.Dispenser, v *bool) error {
	if err := b.Once(d, d.Val()); err != nil {
		return err
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	*v = true
	return nil
}

// Duration reads a single-valued option of one duration.
func (b *Block) Duration(d *caddyfile.Dispenser, v *caddy.Duration) error {
	return value(b, d, v, parseDuration)
}

// DurationPtr is Duration for an option whose explicit 0 differs from
// unset (nil).
func (b *Block) DurationPtr(d *caddyfile.Dispenser, v **caddy.Duration) error {
	*v = new(caddy.Duration)
	return value(b, d, *v, parseDuration)
}

// IntPtr reads a single-valued option of one integer whose explicit 0
// differs from unset (nil).
func (b *Block) IntPtr(d *caddyfile.Dispenser, v **int) error {
	*v = new(int)
	return value(b, d, *v, strconv.Atoi)
}

// Int64Ptr is IntPtr for an int64.
func (b *Block) Int64Ptr(d *caddyfile.Dispenser, v **int64) error {
	*v = new(int64)
	return value(b, d, *v, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
}

func value[T any](b *Block, d *caddyfile.Dispenser, v *T, parse func(string) (T, error)) error {
	name := d.Val()
	var s string
	if err := b.String(d, &s); err != nil {
		return err
	}
	x, err := parse(s)
	if err != nil {
		return d.Errf("%s: %v", name, err)
	}
	*v = x
	return nil
}

func parseDuration(s string) (caddy.Duration, error) {
	d, err := caddy.ParseDuration(s)
	return caddy.Duration(d), err
}

package caddyopt_test

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/guestauth/caddy-guestauth/internal/caddyopt"
)

// A single-valued option given twice in one block is refused with both
// lines; in another block (another Block) it is not; a repeatable one adds
// up.
func TestBlock(t *testing.T) {
	t.Parallel()
	parse := func(input string) (string, caddy.Duration, []string, error) {
		d := caddyfile.NewTestDispenser(input)
		var opts caddyopt.Block
		var name string
		var dur caddy.Duration
		var list []string
		for d.Next() {
			var err error
			switch d.Val() {
			case "name":
				err = opts.String(d, &name)
			case "every":
				err = opts.Duration(d, &dur)
			case "add":
				err = caddyopt.Append(d, &list)
			}
			if err != nil {
				return name, dur, list, err
			}
			for d.NextArg() {
			}
		}
		return name, dur, list, nil
	}
	name, dur, list, err := parse("name a\nevery 2s\nadd x y\nadd z")
	if err != nil || name != "a" || dur != caddy.Duration(2e9) || strings.Join(list, ",") != "x,y,z" {
		t.Fatalf("got %q %v %q %v", name, dur, list, err)
	}
	for input, want := range map[string]string{
		"name a\nadd x\nname b":    "name given twice: at Testfile:1 and Testfile:3",
		"every 1s\n\nevery 1s":     "every given twice: at Testfile:1 and Testfile:3",
		"every soon":               "every: ",
		"name":                     "wrong argument count",
		"add":                      "wrong argument count",
		"name a b":                 "wrong argument count",
		"every 1s\nname a\nname a": "name given twice: at Testfile:2 and Testfile:3",
	} {
		if _, _, _, err := parse(input); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want %q", input, err, want)
		}
	}
}

// Package headers is what the upstream is told about the user: the
// identity headers. A client can never send one: every header of the set
// is stripped from its request in any spelling, from the header fields,
// the Connection and Trailer tokens and the trailers; the verified values
// are then set in their place, with the optional signed assertion
// (assertion.go). The Caddy module's proxy path calls both.
package headers

import (
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// The default names of the headers guest_auth sets for the upstream.
const (
	DefaultUserID        = "X-Auth-User-Id"
	DefaultUserName      = "X-Auth-User-Name"
	DefaultUserTag       = "X-Auth-User-Tag"
	DefaultUserAnonymous = "X-Auth-User-Anonymous"
	DefaultAssertion     = "X-Auth-Assertion"
	DefaultMergedFrom    = "X-Auth-Merged-From"
)

// DefaultKeep is the keep header's default name: the upstream's response
// header marking the requesting guest kept (canonical, as the keys of a
// response's header).
const DefaultKeep = "X-Guest-Auth-Keep"

// HasKeep reports whether a response's h carries the keep header, under
// name (canonical) or DefaultKeep.
func HasKeep(h http.Header, name string) bool {
	_, custom := h[name]
	_, def := h[DefaultKeep]
	return custom || def
}

// TakeKeep removes the keep header from a response's h, under name
// (canonical) and DefaultKeep (which under another name marks nothing),
// and reports whether it said "true" under name.
func TakeKeep(h http.Header, name string) bool {
	v := h.Get(name)
	delete(h, name)
	delete(h, DefaultKeep)
	return strings.EqualFold(strings.TrimSpace(v), "true")
}

// Names are one config's names of the headers guest_auth may set for the
// upstream; "" is the default name. Assertion and MergedFrom name the
// signed assertion's and the merge's headers whether or not the config
// sets them.
type Names struct {
	UserID, UserName, UserTag, UserAnonymous string
	Assertion, MergedFrom                    string
}

// defaults is Names with every default name.
var defaults = Names{DefaultUserID, DefaultUserName, DefaultUserTag, DefaultUserAnonymous, DefaultAssertion, DefaultMergedFrom}

// withDefaults is n with the default name for each "".
func (n Names) withDefaults() Names {
	or := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	return Names{or(n.UserID, DefaultUserID), or(n.UserName, DefaultUserName), or(n.UserTag, DefaultUserTag),
		or(n.UserAnonymous, DefaultUserAnonymous), or(n.Assertion, DefaultAssertion), or(n.MergedFrom, DefaultMergedFrom)}
}

// CheckUserNames checks that the four user headers' names (the default
// for each "") are distinct in every spelling (Normalize) and non-empty.
func (n Names) CheckUserNames() error {
	n = n.withDefaults()
	seen := map[string]bool{}
	for _, h := range []string{n.UserID, n.UserName, n.UserTag, n.UserAnonymous} {
		h = Normalize(h)
		if h == "" || seen[h] {
			return errors.New("identity header names must be distinct and non-empty")
		}
		seen[h] = true
	}
	return nil
}

func (n Names) all() []string {
	return []string{n.UserID, n.UserName, n.UserTag, n.UserAnonymous, n.Assertion, n.MergedFrom}
}

// Identity is one config's identity headers.
type Identity struct {
	// canonical are the user id, name, tag and anonymous flag headers'
	// names as http.Header.Set keys them.
	canonical [4]string
	strip     []string // every name a client may not send, each as Normalize makes it
}

// NewIdentity makes the identity headers of a config naming n. It sets
// n's user id, username, tag and anonymous flag headers; it strips every
// header guest_auth could ever set, whatever this config sets: n's names
// and every default name, the assertion and merged-from headers included.
// So a config without an assertion still strips a captured one, and one
// with custom names still strips a forged X-Auth-User-Id.
func NewIdentity(n Names) *Identity {
	n = n.withDefaults()
	h := &Identity{canonical: [4]string{
		textproto.CanonicalMIMEHeaderKey(n.UserID), textproto.CanonicalMIMEHeaderKey(n.UserName),
		textproto.CanonicalMIMEHeaderKey(n.UserTag), textproto.CanonicalMIMEHeaderKey(n.UserAnonymous),
	}}
	for _, s := range append(n.all(), defaults.all()...) {
		if v := Normalize(s); !slices.Contains(h.strip, v) {
			h.strip = append(h.strip, v)
		}
	}
	return h
}

// Names are the names a client may not send, as Normalize makes them.
func (h *Identity) Names() []string { return slices.Clone(h.strip) }

// Set sets the identity headers of u on h (Bearer and cookie sessions
// alike): h.Set for each, with one allocation for the four values.
func (h *Identity) Set(hdr http.Header, u *model.User) {
	v := make([]string, 4)
	v[0], v[1], v[2], v[3] = u.ID, u.Name, u.Tag, strconv.FormatBool(u.IsAnonymous())
	hdr[h.canonical[0]], hdr[h.canonical[1]] = v[0:1:1], v[1:2:2]
	hdr[h.canonical[2]], hdr[h.canonical[3]] = v[2:3:3], v[3:4:4]
}

// Normalize folds a header name the way upstreams may read it:
// case-insensitive, and CGI-style servers (HTTP_X_AUTH_USER_ID) read '_'
// and '.' as '-'.
func Normalize(s string) string {
	return strings.ToLower(strings.NewReplacer("_", "-", ".", "-").Replace(s))
}

// nameIs compares without allocating (this runs on every header of every
// request).
func nameIs(key, normalized string) bool {
	if len(key) != len(normalized) {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c == '_' || c == '.':
			c = '-'
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		if c != normalized[i] {
			return false
		}
	}
	return true
}

// Strip removes every client-sent header of the set from r, in any
// spelling, so only guest_auth's own values reach the next handler:
//
//   - header fields named by the set are deleted;
//   - Connection (and Trailer) tokens naming one are dropped, since
//     reverse_proxy deletes the headers a Connection field names *after*
//     guest_auth has set them; other tokens (close, keep-alive, Upgrade)
//     stay, and a field left empty is deleted;
//   - request trailers named by the set are deleted, now and when the body
//     reaches EOF (net/http fills trailers in only then, and reverse_proxy
//     copies them to the upstream at that same EOF).
//
// A request with neither Connection, Trailer nor trailers costs no
// allocation.
func (h *Identity) Strip(r *http.Request) {
	hdr := r.Header
	for key := range hdr {
		if h.is(key) {
			delete(hdr, key)
		}
	}
	for _, field := range [...]string{"Connection", "Trailer"} {
		if vs, ok := hdr[field]; ok {
			if kept, changed := h.dropTokens(vs); changed {
				if len(kept) == 0 {
					delete(hdr, field)
				} else {
					hdr[field] = kept
				}
			}
		}
	}
	if r.Trailer != nil {
		h.stripTrailer(r.Trailer)
	}
	// HTTP/1.1 merges every trailer the client sends (declared or not) into
	// r.Trailer at EOF; HTTP/2 copies only declared ones, just deleted above.
	if r.Body != nil && r.Body != http.NoBody && (r.Trailer != nil || len(r.TransferEncoding) > 0) {
		r.Body = &trailerStripper{ReadCloser: r.Body, h: h, r: r}
	}
}

// is reports whether key spells a name of the set.
func (h *Identity) is(key string) bool {
	for _, name := range h.strip {
		if nameIs(key, name) {
			return true
		}
	}
	return false
}

func (h *Identity) stripTrailer(t http.Header) {
	for key := range t {
		if h.is(key) {
			delete(t, key)
		}
	}
}

// dropTokens rewrites the values of a comma-separated list of header names
// (Connection, Trailer) without the identity names. changed is false, and
// nothing is allocated, when no token names one.
func (h *Identity) dropTokens(values []string) (kept []string, changed bool) {
	found := false
	for _, v := range values {
		for tok := range strings.SplitSeq(v, ",") {
			if h.is(textproto.TrimString(tok)) {
				found = true
				break
			}
		}
	}
	if !found {
		return values, false
	}
	for _, v := range values {
		var toks []string
		for tok := range strings.SplitSeq(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" && !h.is(tok) {
				toks = append(toks, tok)
			}
		}
		if len(toks) > 0 {
			kept = append(kept, strings.Join(toks, ", "))
		}
	}
	return kept, true
}

// trailerStripper removes identity trailers the moment net/http has read
// them, at EOF, before any reader wrapping it (reverse_proxy's) sees EOF.
type trailerStripper struct {
	io.ReadCloser
	h *Identity
	r *http.Request
}

func (b *trailerStripper) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && b.r.Trailer != nil {
		b.h.stripTrailer(b.r.Trailer)
	}
	return n, err
}

package storage

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unsafe"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Decoding of the user and session records on the per-request read
// (Identity), without encoding/json's reflection: a record in the form
// json.Marshal writes it (no whitespace, no escapes, ASCII strings, known
// members, each once) is read in one pass, its strings copied out of the
// store's memory into one allocation; anything else (an older or hand-made
// record, an escaped string, a null) is left to json.Unmarshal, so the
// result is always what json.Unmarshal would make of it.

// decodeUser reads a user record.
func decodeUser(raw []byte, u *model.User) error {
	if fastDecode(raw, u) {
		return nil
	}
	*u = model.User{}
	return json.Unmarshal(raw, u)
}

// decodeSession reads a session record.
func decodeSession(raw []byte, s *model.Session) error {
	if fastDecode(raw, s) {
		return nil
	}
	*s = model.Session{}
	return json.Unmarshal(raw, s)
}

// member is one "name":value of a record in canonical form. Strings are
// given without their quotes.
type member struct {
	name, value []byte
	str         bool
}

// canonicalMembers splits raw into at most len(dst) members, or reports
// false if raw is not in the canonical form.
func canonicalMembers(raw []byte, dst []member) ([]member, bool) {
	n := len(raw)
	if n < 2 || raw[0] != '{' || raw[n-1] != '}' {
		return nil, false
	}
	out := dst[:0]
	i := 1
	if n == 2 {
		return out, true
	}
	for {
		if len(out) == cap(out) {
			return nil, false
		}
		name, next, ok := plainString(raw, i)
		if !ok || next >= n || raw[next] != ':' {
			return nil, false
		}
		m := member{name: name}
		i = next + 1
		switch c := raw[i]; {
		case c == '"':
			m.value, i, ok = plainString(raw, i)
			if !ok {
				return nil, false
			}
			m.str = true
		case c == 't' || c == 'f' || '0' <= c && c <= '9':
			start := i
			for i < n && raw[i] != ',' && raw[i] != '}' {
				i++
			}
			m.value = raw[start:i]
		default: // null, objects, arrays, negative numbers: not ours
			return nil, false
		}
		out = append(out, m)
		switch {
		case i == n-1 && raw[i] == '}':
			return out, true
		case i < n-1 && raw[i] == ',':
			i++
		default:
			return nil, false
		}
	}
}

// plainString reads the string starting at raw[i] if it has no escapes and
// only printable ASCII.
func plainString(raw []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(raw) || raw[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(raw); j++ {
		switch c := raw[j]; {
		case c == '"':
			return raw[i+1 : j], j + 1, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// pack copies strings into one allocation.
type pack struct{ b []byte }

func (p *pack) str(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	start := len(p.b)
	p.b = append(p.b, v...)
	return unsafe.String(&p.b[start], len(v))
}

// fastDecode fills a zero *User or *Session from a canonical record, or
// reports false (dst then holds garbage).
func fastDecode(raw []byte, dst any) bool {
	var buf [16]member
	ms, ok := canonicalMembers(raw, buf[:])
	if !ok {
		return false
	}
	size := 0
	for i, m := range ms {
		for _, o := range ms[:i] {
			if string(o.name) == string(m.name) {
				return false
			}
		}
		if m.str {
			size += len(m.value)
		}
	}
	p := pack{b: make([]byte, 0, size)}
	var okAll = true
	str := func(m member, f *string) {
		okAll = okAll && m.str
		*f = p.str(m.value)
	}
	tm := func(m member, f *time.Time) {
		// time.Time's own reading, as encoding/json would call it; the
		// quotes are just outside m.value.
		okAll = okAll && m.str && f.UnmarshalJSON(quoted(raw, m.value)) == nil
	}
	switch d := dst.(type) {
	case *model.User:
		for _, m := range ms {
			switch string(m.name) {
			case "id":
				str(m, &d.ID)
			case "name":
				str(m, &d.Name)
			case "display_name":
				str(m, &d.DisplayName)
			case "tag":
				str(m, &d.Tag)
			case "password_hash":
				str(m, &d.PasswordHash)
			case "device_kid":
				str(m, &d.DeviceKID)
			case "created_at":
				tm(m, &d.CreatedAt)
			case "updated_at":
				tm(m, &d.UpdatedAt)
			case "orphaned_at":
				tm(m, &d.OrphanedAt)
			case "last_active_at":
				tm(m, &d.LastActiveAt)
			case "kept":
				d.Kept, okAll = string(m.value) == "true", okAll && !m.str && (string(m.value) == "true" || string(m.value) == "false")
			default:
				return false
			}
		}
	case *model.Session:
		for _, m := range ms {
			switch string(m.name) {
			case "id":
				str(m, &d.ID)
			case "user_id":
				str(m, &d.UserID)
			case "client_id":
				str(m, &d.ClientID)
			case "merged_from":
				str(m, &d.MergedFrom)
			case "auth_time":
				tm(m, &d.AuthTime)
			case "created_at":
				tm(m, &d.CreatedAt)
			case "last_used_at":
				tm(m, &d.LastUsedAt)
			case "expires_at":
				tm(m, &d.ExpiresAt)
			case "idle_expires_at":
				tm(m, &d.IdleExpiresAt)
			case "refresh_key":
				if !m.str {
					return false
				}
				key := make([]byte, base64.StdEncoding.DecodedLen(len(m.value)))
				n, err := base64.StdEncoding.Decode(key, m.value)
				if err != nil {
					return false
				}
				d.RefreshKey = key[:n]
			case "generation":
				if m.str {
					return false
				}
				g, err := strconv.ParseUint(unsafe.String(unsafe.SliceData(m.value), len(m.value)), 10, 64)
				if err != nil {
					return false
				}
				d.Generation = g
			default:
				return false
			}
		}
	default:
		return false
	}
	return okAll
}

// quoted widens v, a string's contents inside raw, to include its quotes.
func quoted(raw, v []byte) []byte {
	off := cap(raw) - cap(v) // v's offset in raw
	return raw[off-1 : off+len(v)+1]
}

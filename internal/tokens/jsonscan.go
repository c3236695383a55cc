package tokens

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// A one-pass reader for the two small JSON objects of a compact JWS: it
// validates the whole object (RFC 8259, as strictly as encoding/json's
// syntax check), finds each wanted top-level member's value and refuses
// duplicate or case-folded member names in the same pass, without
// reflection and without allocating (but for the rare escaped or non-ASCII
// string, decoded with encoding/json so its meaning stays encoding/json's).
//
// Values are typed afterwards (jsonString, jsonNumber, jsonBool,
// jsonStrings): like json.Unmarshal, a syntax error anywhere wins over a
// wrong type, null leaves a member's zero value, and a wrong type is
// ReasonClaims.

// maxFields bounds the wanted members of one object.
const maxFields = 16

// scanObject validates data as one JSON object and reports which of fields
// are present (bit i for fields[i]), storing each one's raw value in
// vals[i]. It refuses, as malformed, anything but an object (with nothing
// but whitespace after it), a member named twice, a member that matches a
// field only case-insensitively (a decoder that folds case, as
// encoding/json does, would read it as the field), and more than 16
// members not in fields.
func scanObject(data []byte, fields []string) (vals [maxFields][]byte, present uint64, reason string) {
	if len(data) == 0 || data[0] != '{' {
		return vals, 0, ReasonMalformed
	}
	s := scanner{data: data, i: 1}
	var other [16]string // names outside fields, to catch their duplicates
	nOther := 0
	s.ws()
	if s.peek() == '}' {
		s.i++
		return vals, 0, s.end()
	}
	for {
		if s.peek() != '"' {
			return vals, 0, ReasonMalformed
		}
		start := s.i
		escaped, ok := s.str()
		if !ok {
			return vals, 0, ReasonMalformed
		}
		var name string
		if escaped {
			if name, ok = unquote(data[start:s.i]); !ok {
				return vals, 0, ReasonMalformed
			}
		} else {
			name = unsafe.String(unsafe.SliceData(data[start+1:]), s.i-start-2)
		}
		s.ws()
		if s.peek() != ':' {
			return vals, 0, ReasonMalformed
		}
		s.i++
		s.ws()
		vstart := s.i
		if !s.value(0) {
			return vals, 0, ReasonMalformed
		}
		val := data[vstart:s.i]
		known := false
		for j, f := range fields {
			if name == f {
				if present&(1<<j) != 0 {
					return vals, 0, ReasonMalformed
				}
				present |= 1 << j
				vals[j] = val
				known = true
				break
			}
			if strings.EqualFold(name, f) {
				return vals, 0, ReasonMalformed
			}
		}
		if !known {
			if nOther == len(other) || slices.Contains(other[:nOther], name) {
				return vals, 0, ReasonMalformed
			}
			other[nOther] = name
			nOther++
		}
		s.ws()
		switch s.peek() {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			return vals, present, s.end()
		default:
			return vals, 0, ReasonMalformed
		}
	}
}

// maxDepth bounds nesting (encoding/json's own limit is 10000; a token's
// 8 KiB cannot reach it, but the recursion stays bounded regardless).
const maxDepth = 10000

type scanner struct {
	data []byte
	i    int
}

// peek is the byte at the cursor, or 0 at the end.
func (s *scanner) peek() byte {
	if s.i < len(s.data) {
		return s.data[s.i]
	}
	return 0
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// end accepts the object just closed if only whitespace follows: it is
// the reason to refuse it, or "".
func (s *scanner) end() string {
	s.ws()
	if s.i != len(s.data) {
		return ReasonMalformed
	}
	return ""
}

// str moves past the string at the cursor (its opening quote), reporting
// whether it has escapes. Control characters are refused, as are escapes
// JSON does not define; other bytes pass as encoding/json lets them.
func (s *scanner) str() (escaped, ok bool) {
	d := s.data
	for i := s.i + 1; i < len(d); i++ {
		switch c := d[i]; {
		case c == '"':
			s.i = i + 1
			return escaped, true
		case c < 0x20:
			return false, false
		case c == '\\':
			escaped = true
			i++
			if i >= len(d) {
				return false, false
			}
			switch d[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(d) {
					return false, false
				}
				for _, h := range d[i+1 : i+5] {
					if !isHex(h) {
						return false, false
					}
				}
				i += 4
			default:
				return false, false
			}
		}
	}
	return false, false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// value moves past one JSON value at the cursor.
func (s *scanner) value(depth int) bool {
	if depth > maxDepth {
		return false
	}
	switch c := s.peek(); {
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '{':
		s.i++
		s.ws()
		if s.peek() == '}' {
			s.i++
			return true
		}
		for {
			if s.peek() != '"' {
				return false
			}
			if _, ok := s.str(); !ok {
				return false
			}
			s.ws()
			if s.peek() != ':' {
				return false
			}
			s.i++
			s.ws()
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
				s.ws()
			case '}':
				s.i++
				return true
			default:
				return false
			}
		}
	case c == '[':
		s.i++
		s.ws()
		if s.peek() == ']' {
			s.i++
			return true
		}
		for {
			if !s.value(depth + 1) {
				return false
			}
			s.ws()
			switch s.peek() {
			case ',':
				s.i++
				s.ws()
			case ']':
				s.i++
				return true
			default:
				return false
			}
		}
	case c == '-' || '0' <= c && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *scanner) literal(lit string) bool {
	if len(s.data)-s.i < len(lit) || string(s.data[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// number moves past -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (s *scanner) number() bool {
	if s.peek() == '-' {
		s.i++
	}
	switch c := s.peek(); {
	case c == '0':
		s.i++
	case '1' <= c && c <= '9':
		s.digits()
	default:
		return false
	}
	if s.peek() == '.' {
		s.i++
		if !s.digits() {
			return false
		}
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.i++
		if c := s.peek(); c == '+' || c == '-' {
			s.i++
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits moves past [0-9]* and reports whether there was one.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.data) && '0' <= s.data[s.i] && s.data[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// The typed readers take a value scanObject validated (or nil, for an
// absent member: the zero value). ok is false for a value of another type.

// jsonString reads a string. A plain ASCII string is returned as a view of
// raw, not a copy.
func jsonString(raw []byte) (string, bool) {
	switch {
	case raw == nil || raw[0] == 'n':
		return "", true
	case raw[0] != '"':
		return "", false
	}
	in := raw[1 : len(raw)-1]
	for _, c := range in {
		if c == '\\' || c >= 0x80 {
			return unquote(raw)
		}
	}
	return unsafe.String(unsafe.SliceData(in), len(in)), true
}

// unquote decodes a JSON string as encoding/json does (escapes, invalid
// UTF-8 as U+FFFD), from a copy: raw (a view of a stack buffer) must not
// escape.
func unquote(raw []byte) (string, bool) {
	var s string
	err := json.Unmarshal(bytes.Clone(raw), &s)
	return s, err == nil
}

// jsonNumber reads a number as a float64 (one out of its range is a wrong
// type, as for encoding/json).
func jsonNumber(raw []byte) (float64, bool) {
	switch {
	case raw == nil || raw[0] == 'n':
		return 0, true
	case raw[0] != '-' && (raw[0] < '0' || raw[0] > '9'):
		return 0, false
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(raw), len(raw)), 64)
	return f, err == nil
}

func jsonBool(raw []byte) (bool, bool) {
	switch {
	case raw == nil || raw[0] == 'n':
		return false, true
	case raw[0] == 't':
		return true, true
	case raw[0] == 'f':
		return false, true
	}
	return false, false
}

// maxViews is how many strings of an array jsonStrings returns as views;
// past that it returns copies.
const maxViews = 4

// jsonStrings reads a string or an array of strings (RFC 7519 §4.1.3 aud);
// a null element reads as "". Up to maxViews strings come as views in
// few[:n]; more come as copies in many (few is then unused).
func jsonStrings(raw []byte) (few [maxViews]string, n int, many []string, ok bool) {
	switch {
	case raw == nil || raw[0] == 'n':
		return few, 0, nil, true
	case raw[0] == '"':
		few[0], ok = jsonString(raw)
		return few, 1, nil, ok
	case raw[0] != '[':
		return few, 0, nil, false
	}
	s := scanner{data: raw, i: 1}
	s.ws()
	if s.peek() == ']' {
		return few, 0, nil, true
	}
	for {
		start := s.i
		s.value(0) // validated already
		v, ok := jsonString(raw[start:s.i])
		if !ok {
			return few, 0, nil, false
		}
		switch {
		case many != nil:
			many = append(many, strings.Clone(v))
		case n == maxViews:
			many = make([]string, 0, 2*maxViews)
			for _, f := range few {
				many = append(many, strings.Clone(f))
			}
			many = append(many, strings.Clone(v))
		default:
			few[n] = v
			n++
		}
		s.ws()
		if s.peek() != ',' {
			return few, n, many, true
		}
		s.i++
		s.ws()
	}
}

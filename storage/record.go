package storage

import (
	jsonv2 "github.com/go-json-experiment/json"
)

// DecodeRecord reads a stored record (a user, session, device, signing key
// or challenge, as encoding/json.Marshal wrote it) into v. Both backends
// read every record through it, so a record means the same whichever
// backend, and whichever method, reads it.
//
// It is github.com/go-json-experiment/json with its default options,
// stricter than encoding/json where a record could be read two ways: a
// member name given twice is refused (encoding/json kept the last), a
// member name matches a field only exactly (encoding/json also matched it
// case-insensitively, so "User_ID" would have set the user id; here it is
// an unknown member, ignored, as unknown members are so that a record
// written by a newer build still reads), invalid UTF-8 is refused
// (encoding/json replaced it), and so is a time not in RFC 3339's exact
// form (time.Time.UnmarshalJSON let "T1:00:00Z" pass). Records as this
// module writes them read the same as with encoding/json
// (FuzzDecodeRecord).
func DecodeRecord(raw []byte, v any) error {
	return jsonv2.Unmarshal(raw, v)
}

package protocol

// Request bodies as Casdoor's SDKs send them, besides the JSON and form
// bodies of RFC 6749 (readParams): the Go SDK labels JSON text/plain and
// sends some calls as multipart/form-data, and both SDKs post whole User
// objects (booleans, numbers, arrays, objects, nulls) to the user API.
// Each reader is bounded by maxBodyBytes and refuses what it cannot read
// unambiguously (a repeated name, trailing data), as readParams does.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
)

// bodyFormats are the Casdoor formats a reader accepts beyond readParams'.
type bodyFormats uint8

const (
	// textJSON: a text/plain body holding a JSON object of strings
	// (casdoor-go-sdk's POSTs).
	textJSON bodyFormats = 1 << iota
	// multipartFields: multipart/form-data of plain fields, no files
	// (casdoor-go-sdk's introspection and set-password, casdoor-nodejs-sdk's
	// set-password).
	multipartFields
)

// maxMultipartFields bounds the fields of a multipart body.
const maxMultipartFields = 32

// readParamsAs is readParams that also reads the Casdoor formats in
// formats; the values must still be strings, each named once.
func readParamsAs(w http.ResponseWriter, r *http.Request, formats bodyFormats) (map[string]string, error) {
	ct, mp, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case err == nil && ct == "text/plain" && formats&textJSON != 0:
		body, err := readBody(w, r, maxBodyBytes)
		if err != nil {
			return nil, err
		}
		return flatJSONObject(body)
	case err == nil && ct == "multipart/form-data" && formats&multipartFields != 0:
		body, err := readBody(w, r, maxBodyBytes)
		if err != nil {
			return nil, err
		}
		return multipartParams(body, mp["boundary"])
	}
	return readParams(w, r)
}

// multipartParams reads the fields of a multipart/form-data body. A file
// part, a repeated field or a malformed body is refused.
func multipartParams(body []byte, boundary string) (map[string]string, error) {
	if boundary == "" {
		return nil, badRequest("The multipart body has no boundary.")
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	params := map[string]string{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return params, nil
		}
		if err != nil {
			return nil, badRequest("The multipart body is malformed.")
		}
		name := part.FormName()
		if name == "" || part.FileName() != "" {
			return nil, badRequest("The multipart body may hold named fields only, no files.")
		}
		if _, dup := params[name]; dup {
			return nil, badRequest("The parameter %q is repeated.", name)
		}
		if len(params) == maxMultipartFields {
			return nil, badRequest("The multipart body has more than %d fields.", maxMultipartFields)
		}
		v, err := io.ReadAll(part)
		if err != nil {
			return nil, badRequest("The multipart body is malformed.")
		}
		params[name] = string(v)
	}
}

// readUserObject reads a user-API body: a JSON object (application/json,
// or text/plain as casdoor-go-sdk labels it), such as a whole Casdoor User
// object. Its string members are returned; null, booleans, numbers,
// arrays and objects are skipped, since they are fields this site does
// not keep. A member named twice, anything but one object, or data after
// it is refused.
func readUserObject(w http.ResponseWriter, r *http.Request) (map[string]string, error) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (ct != "application/json" && ct != "text/plain") {
		return nil, badRequest("The Content-Type must be application/json (or text/plain holding JSON).")
	}
	body, err := readBody(w, r, maxBodyBytes)
	if err != nil {
		return nil, err
	}
	return userObject(body)
}

// userObject reads the string members of the JSON object body.
func userObject(body []byte) (map[string]string, error) {
	notObject := badRequest("The request body is not a JSON object.")
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, notObject
	}
	params := map[string]string{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		k, ok := tok.(string)
		if err != nil || !ok {
			return nil, notObject
		}
		if seen[k] {
			return nil, badRequest("The parameter %q is repeated.", k)
		}
		seen[k] = true
		v, err := dec.Token()
		if err != nil {
			return nil, notObject
		}
		switch v := v.(type) {
		case string:
			params[k] = v
		case json.Delim: // an object or array: skipped whole
			if err := skipNested(dec); err != nil {
				return nil, notObject
			}
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, notObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("The request body has data after the JSON object.")
	}
	return params, nil
}

// skipNested reads past the rest of an object or array whose opening
// delimiter was just read. The decoder checks the syntax (and that the
// delimiters match) as it goes; no recursion, so depth costs nothing.
func skipNested(dec *json.Decoder) error {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

// queryParam is the single value of name in r's query ("" when absent);
// ok is false when it is repeated.
func queryParam(q url.Values, name string) (string, bool) {
	vs := q[name]
	if len(vs) > 1 {
		return "", false
	}
	if len(vs) == 0 {
		return "", true
	}
	return vs[0], true
}

package protocol

// CORS for the endpoints browser SDKs call from another origin (the token
// endpoints, revocation, introspection, UserInfo, Casdoor's account and
// user API, Authgear's anonymous user API): only the configured origins,
// each by its exact serialization, never "*", always with credentials
// allowed (Authgear's SDK sends its token requests with credentials
// "include"). These endpoints read the Authorization header, never a
// cookie, so allowing credentials lets no other site act with a visitor's
// cookies.
//
// A preflight (OPTIONS with Access-Control-Request-Method) from an
// allowed origin is answered 204 with the methods of the endpoint and the
// request headers SDKs send; from any other origin it is answered 403 with
// no CORS headers, so the browser refuses the request that would follow.
// An actual request from an allowed origin gets Access-Control-Allow-Origin
// (its origin) and Access-Control-Allow-Credentials, and the headers SDKs
// read are exposed; from another origin it is served without CORS headers,
// so the browser does not let the page read the answer. Every answer of
// these endpoints varies by Origin.

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// corsAllowHeaders are the request headers SDKs send cross-origin that
// need a preflight: Authorization (Bearer, Basic) and a JSON Content-Type.
const corsAllowHeaders = "Authorization, Content-Type"

// corsExposeHeaders are the response headers SDKs read besides the
// CORS-safelisted ones: the RFC 6750 challenge and Retry-After.
const corsExposeHeaders = "WWW-Authenticate, Retry-After"

// corsMaxAge is how long (seconds) a browser may cache a preflight.
const corsMaxAge = "600"

// CORS is the configured cross-origin policy; nil allows no origin.
type CORS struct {
	origins map[string]bool
}

// NewCORS makes the policy of the cors_origins option: each an origin,
// scheme://host[:port], as browsers send it in Origin (lower case, no
// default port, no path). Anything else is an error saying how to write
// it. No origins gives nil.
func NewCORS(origins []string) (*CORS, error) {
	if len(origins) == 0 {
		return nil, nil
	}
	c := &CORS{origins: map[string]bool{}}
	for _, o := range origins {
		canon, err := canonicalOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("cors_origins: %w", err)
		}
		if canon != o {
			return nil, fmt.Errorf("cors_origins: write %q as %q, as browsers send it", o, canon)
		}
		c.origins[o] = true
	}
	return c, nil
}

// canonicalOrigin is o as the Origin header serializes it (RFC 6454 §6.1).
func canonicalOrigin(o string) (string, error) {
	if o == "*" || o == "null" {
		return "", fmt.Errorf("%q is not allowed: name each origin", o)
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || (u.Path != "" && u.Path != "/") || u.Opaque != "" {
		return "", fmt.Errorf("%q is not an origin: write scheme://host[:port]", o)
	}
	scheme, host, port := strings.ToLower(u.Scheme), strings.ToLower(u.Hostname()), u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	return scheme + "://" + host, nil
}

// allowed returns r's Origin when the policy allows it.
func (c *CORS) allowed(r *http.Request) (string, bool) {
	if c == nil {
		return "", false
	}
	origins := r.Header.Values("Origin")
	if len(origins) != 1 || !c.origins[origins[0]] {
		return "", false
	}
	return origins[0], true
}

// IsPreflight reports whether r is a CORS preflight request.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}

// Preflight answers the preflight r of an endpoint taking methods: 204
// with the CORS headers for an allowed origin, 403 without them for any
// other.
func (c *CORS) Preflight(w http.ResponseWriter, r *http.Request, methods []string) {
	h := w.Header()
	h.Add("Vary", "Origin")
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	origin, ok := c.allowed(r)
	if !ok {
		w.WriteHeader(http.StatusForbidden)
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Allow-Methods", strings.Join(methods, ", "))
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
}

// Apply sets the CORS headers of an actual request r's answer, before the
// endpoint writes it.
func (c *CORS) Apply(w http.ResponseWriter, r *http.Request) {
	if c == nil {
		return
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	origin, ok := c.allowed(r)
	if !ok {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
}

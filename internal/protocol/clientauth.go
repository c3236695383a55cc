package protocol

import (
	"net/url"
)

// basicClient authenticates the credentials of a Basic header. RFC 6749
// §2.3.1 form-encodes them (golang.org/x/oauth2, openid-client), Casdoor's
// SDKs send them as they are: the decoded pair is tried first, then the
// pair as sent when decoding changes it (a secret with + or %). It
// returns the client and the secret that matched it.
func (h *Handler) basicClient(rawID, rawSecret string) (*Client, string, error) {
	id, err1 := url.QueryUnescape(rawID)
	secret, err2 := url.QueryUnescape(rawSecret)
	if err1 == nil && err2 == nil {
		if c := h.matchClient(id, secret); c != nil {
			return c, secret, nil
		}
	}
	if err1 != nil || err2 != nil || id != rawID || secret != rawSecret {
		if c := h.matchClient(rawID, rawSecret); c != nil {
			return c, rawSecret, nil
		}
	}
	return nil, "", clientError(true, "Client authentication failed.")
}

// matchClient returns the client id names when secret is its secret, nil
// otherwise. The comparison is constant-time over fixed-size digests, and
// an unknown id costs the same comparison.
func (h *Handler) matchClient(id, secret string) *Client {
	c := h.Clients[id]
	want := &dummySecret
	if c != nil {
		want = &c.secret
	}
	if ok := want.Matches([]byte(secret)); !ok || c == nil {
		return nil
	}
	return c
}

package accounts

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"strconv"
	"strings"
)

// A device token ("device cookie", OWASP's Authentication Cheat Sheet) is
// given to a client at each successful password sign-in and sent back with
// later sign-ins: "<user id>.<expiry unix>.<nonce>.<mac>", the MAC an
// HMAC-SHA256 under a secret derived from the signing key. It proves the
// client signed in to that account before, so its attempts draw on a budget
// of their own (keyed by the nonce) instead of the account's shared one.
// Nothing is stored: it is valid until it expires (Config.SessionLifetime
// after issue) or the signing key changes; changing the user's name or
// password does not end it, as it names the user by id.

// deviceTokenPurpose labels the derived MAC key.
const deviceTokenPurpose = "device-token/v1"

func (s *Service) deviceMAC(userID, exp, nonce string) string {
	h := hmac.New(sha256.New, s.deviceKey)
	h.Write([]byte(userID + "." + exp + "." + nonce))
	return b64(h.Sum(nil))
}

func (s *Service) newDeviceToken(userID string) (string, error) {
	n := make([]byte, 16)
	if _, err := rand.Read(n); err != nil {
		return "", err
	}
	exp := strconv.FormatInt(s.now().Add(s.cfg.SessionLifetime).Unix(), 10)
	nonce := b64(n)
	return userID + "." + exp + "." + nonce + "." + s.deviceMAC(userID, exp, nonce), nil
}

// checkDeviceToken returns the token's nonce when token is a valid, unexpired
// device token of userID.
func (s *Service) checkDeviceToken(token, userID string) (string, bool) {
	if len(token) > 256 {
		return "", false
	}
	p := strings.Split(token, ".")
	if len(p) != 4 || p[0] != userID {
		return "", false
	}
	if !hmac.Equal([]byte(p[3]), []byte(s.deviceMAC(p[0], p[1], p[2]))) {
		return "", false
	}
	exp, err := strconv.ParseInt(p[1], 10, 64)
	if err != nil || s.now().Unix() >= exp {
		return "", false
	}
	return p[2], true
}

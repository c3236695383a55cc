package caddymodule

import (
	"errors"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/storage"
)

// unavailableRetry is the Retry-After (seconds) of a 503 answered while the
// store cannot be reached: a PostgreSQL restart or failover takes seconds.
const unavailableRetry = 2

// unavailableText is what a client is told; the driver's message is logged,
// never sent.
const unavailableText = "The user store is temporarily unavailable; retry later."

// storeUnavailable reports whether err is the store being unreachable
// (storage.ErrUnavailable); if so it logs err and sets Retry-After, and the
// caller answers 503 in its endpoint's error format. Such a request is
// never answered as anonymous, nor with a 500 carrying a driver message.
func (g *GuestAuth) storeUnavailable(w http.ResponseWriter, err error, where string) bool {
	if !errors.Is(err, storage.ErrUnavailable) {
		return false
	}
	g.logger.Warn("storage unavailable", zap.String("during", where), zap.Error(err))
	w.Header().Set("Retry-After", strconv.Itoa(unavailableRetry))
	return true
}

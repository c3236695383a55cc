package caddymodule

import (
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// keepWriter removes the keep header from the upstream's response and, when
// it says "true" for a guest (or a passwordless normal user, who expires like
// one), marks the user kept (never expired). With a custom keep_header the
// default one is removed too (it marks nothing): it is for guest_auth, never
// for the client.
type keepWriter struct {
	caddyhttp.ResponseWriterWrapper
	g      *GuestAuth
	r      *http.Request
	user   *model.User // nil: no identity on this request
	marked bool
}

func (k *keepWriter) WriteHeader(status int) {
	k.settle()
	k.ResponseWriterWrapper.WriteHeader(status)
}

// settle removes the keep header and acts on it; it runs before the status
// is written and again when the handler returns, in case it never was.
func (k *keepWriter) settle() {
	h := k.Header()
	v := h.Get(k.g.KeepHeader)
	for _, name := range [...]string{k.g.KeepHeader, defaultKeepHeader} {
		delete(h, name)
	}
	if !k.marked && k.user != nil && k.user.Ephemeral() && !k.user.Kept && strings.EqualFold(strings.TrimSpace(v), "true") {
		k.marked = true
		// The mark is the upstream's decision: it is written even if the
		// client has gone by then.
		if _, err := k.g.svc.SetKept(context.WithoutCancel(k.r.Context()), k.user.ID, true, "keep_header"); err != nil {
			k.g.logger.Error("marking guest kept", zap.String("user_id", k.user.ID), zap.Error(err))
		}
	}
}

func (k *keepWriter) Write(b []byte) (int, error) {
	k.ensureHeader()
	return k.ResponseWriterWrapper.Write(b)
}

func (k *keepWriter) ReadFrom(r io.Reader) (int64, error) {
	k.ensureHeader()
	return k.ResponseWriterWrapper.ReadFrom(r)
}

// ensureHeader runs WriteHeader's check when the body starts without one.
func (k *keepWriter) ensureHeader() {
	h := k.Header()
	_, custom := h[k.g.KeepHeader]
	_, def := h[defaultKeepHeader]
	if custom || def {
		k.WriteHeader(http.StatusOK)
	}
}

// defaultKeepHeader is keep_header's default (canonical, as the keys of a
// response's header).
const defaultKeepHeader = "X-Guest-Auth-Keep"

// next passes the request on, watching the response for the keep header.
func (g *GuestAuth) next(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, user *model.User) error {
	kw := &keepWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, g: g, r: r, user: user}
	err := next.ServeHTTP(kw, r)
	kw.settle()
	return err
}

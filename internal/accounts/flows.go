package accounts

// Flow states: the Service's single-use records that expire (an
// authorization code, an authorization request waiting for the visitor to
// sign in, a logout waiting for confirmation), stored so that any process
// sharing the store can finish what another started. The store keeps only
// a hash of each handle (storage.Backend's flow states); the Service makes
// the handles and checks their limits.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// Kinds of flow state. A handle of one kind never finds a record of
// another.
const (
	FlowCode      = "code"      // an authorization code (codes.go)
	FlowAuthorize = "authorize" // an authorization request waiting for a sign-in
	FlowLogout    = "logout"    // an RP-initiated logout waiting for confirmation
	FlowHandoff   = "handoff"   // an API client's provider sign-in for its guest, not yet opened
)

// FlowStore is what flow states need of the store (storage.Backend
// documents the methods).
type FlowStore interface {
	PutFlowState(ctx context.Context, kind, handle string, f model.FlowState) error
	GetFlowState(ctx context.Context, kind, handle string, now time.Time) (*model.FlowState, error)
	TakeFlowState(ctx context.Context, kind, handle string, now time.Time) (*model.FlowState, error)
	RedeemFlowState(ctx context.Context, kind, handle string, now time.Time, keep int, start func(f *model.FlowState) (*model.Session, error)) (*model.FlowState, int, error)
}

// newHandle is a flow state's handle: 256 random bits, base64url (43
// characters), fit for a URL and never guessed.
func newHandle() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return b64(b), nil
}

// handleOK is a cheap check before a store read: only what newHandle
// makes can name a record, so anything else is unknown without asking.
func handleOK(h string) bool {
	if len(h) != 43 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		base64url := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
		if !base64url {
			return false
		}
	}
	return true
}

// PutFlowState stores v (as JSON) as a flow state of kind, valid for ttl,
// and returns its handle. It is a store write an unauthenticated visitor
// causes, so it spends the challenge limits of clientIP and of the site
// first (a *ThrottledError when one is empty; nothing is written then).
func (s *Service) PutFlowState(ctx context.Context, kind string, ttl time.Duration, v any, clientIP string) (string, error) {
	if wait := s.byIPChallenge.Take(clientIP); wait > 0 {
		return "", s.throttled(LimitIP, wait)
	}
	if wait := s.challengeAll.Take(""); wait > 0 {
		return "", s.throttled(LimitGlobal, wait)
	}
	return s.putFlowState(ctx, kind, ttl, v)
}

func (s *Service) putFlowState(ctx context.Context, kind string, ttl time.Duration, v any) (string, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	handle, err := newHandle()
	if err != nil {
		return "", err
	}
	now := s.now().UTC()
	f := model.FlowState{CreatedAt: now, ExpiresAt: now.Add(ttl), Data: data}
	if err := s.store.PutFlowState(ctx, kind, handle, f); err != nil {
		return "", fmt.Errorf("storing a %s flow state: %w", kind, err)
	}
	return handle, nil
}

// FlowState reads the flow state handle names into v without taking it,
// and returns when it was stored. model.ErrNotFound: unknown or expired;
// model.ErrSpent: already taken (v is not filled then).
func (s *Service) FlowState(ctx context.Context, kind, handle string, v any) (time.Time, error) {
	if !handleOK(handle) {
		return time.Time{}, model.ErrNotFound
	}
	f, err := s.store.GetFlowState(ctx, kind, handle, s.now())
	if err != nil {
		return time.Time{}, err
	}
	return f.CreatedAt, decodeFlow(f, v)
}

// TakeFlowState takes the flow state handle names, so no later take gets
// it, reads it into v and returns when it was stored. model.ErrNotFound:
// unknown or expired; model.ErrSpent: already taken (v is not filled).
func (s *Service) TakeFlowState(ctx context.Context, kind, handle string, v any) (time.Time, error) {
	if !handleOK(handle) {
		return time.Time{}, model.ErrNotFound
	}
	f, err := s.store.TakeFlowState(ctx, kind, handle, s.now())
	if err != nil {
		return time.Time{}, err
	}
	return f.CreatedAt, decodeFlow(f, v)
}

func decodeFlow(f *model.FlowState, v any) error {
	if err := json.Unmarshal(f.Data, v); err != nil {
		return fmt.Errorf("%s flow state: %w", f.Kind, err)
	}
	return nil
}

package accounts

import (
	"context"
	"errors"

	"github.com/guestauth/caddy-guestauth/internal/events"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

// Observer is told of each domain outcome as it happens: a guest created,
// upgraded or expired, sessions revoked, a user deleted or kept, a sign-in
// throttled, a refresh token reused. The Service reports them, so every
// entry point (the token endpoint, the account API, the admin API, the keep
// header) reports the same outcome the same way. Type is one of the events
// constants, or UserKept; ID and Time are left for the receiver to fill.
// It is called synchronously on the request's path, after the outcome is
// stored, and must not block. stored says ev is already in the store's
// webhook outbox, stored with the write it reports (see Stager), under the
// ID and Time it carries: it is to be logged and counted, not queued for
// delivery again.
type Observer func(ctx context.Context, ev events.Event, stored bool)

// UserKept: a user was marked kept or unkept (data: kept, cause "admin" or
// "keep_header"). It is logged, not sent to webhooks.
const UserKept = "user.kept"

type clientIPKey struct{}

// WithClientIP returns ctx carrying the client's IP address, which outcomes
// caused by the request report (signin.throttled, refresh.reuse_detected).
// Limits key on the clientIP parameters of the methods instead.
func WithClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey{}, ip)
}

type adminKey struct{}

// WithAdmin returns ctx carrying the username of the admin acting (the
// dashboard's actions): the events of DeleteUser, RevokeUserSessions and
// SetKept report it as data.admin.
func WithAdmin(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, adminKey{}, name)
}

// withAdmin adds the acting admin of ctx, if any, to data.
func withAdmin(ctx context.Context, data map[string]any) map[string]any {
	if name, _ := ctx.Value(adminKey{}).(string); name != "" {
		data["admin"] = name
	}
	return data
}

func clientIPOf(ctx context.Context) string {
	ip, _ := ctx.Value(clientIPKey{}).(string)
	return ip
}

// observe reports ev, not stored, to the configured Observer, if any.
func (s *Service) observe(ctx context.Context, ev events.Event) {
	if s.cfg.Observer != nil {
		s.cfg.Observer(ctx, ev, false)
	}
}

// DeleteUser deletes a user with its sessions and device key, reporting
// user.deleted with cause (such as "admin"): apps may need to delete the
// user's data. model.ErrNotFound means there is no such user.
func (s *Service) DeleteUser(ctx context.Context, id, cause string) (*model.User, error) {
	return s.deleteUser(ctx, id, cause, "")
}

// deleteUser is DeleteUser through the client clientID ("" for none).
func (s *Service) deleteUser(ctx context.Context, id, cause, clientID string) (*model.User, error) {
	u, err := s.store.GetUser(ctx, id)
	if err != nil {
		return nil, err
	}
	p := s.withEvents(one(events.Event{Type: events.UserDeleted, UserID: id, ClientID: clientID, Data: withAdmin(ctx, map[string]any{"name": u.Name, "tag": u.Tag, "cause": cause})}))
	if err := s.store.DeleteUser(ctx, id, p.tx()); err != nil {
		return nil, err
	}
	s.observeAll(ctx, p.stored(storage.TxResult{}))
	return u, nil
}

// RevokeUserSessions ends all of a user's sessions, reporting
// session.revoked with cause (such as "admin") when there were any.
// model.ErrNotFound means there is no such user.
func (s *Service) RevokeUserSessions(ctx context.Context, id, cause string) (int, error) {
	// DeleteUserSessions does not tell an unknown user from one without
	// sessions; the caller should hear which it was.
	if _, err := s.store.GetUser(ctx, id); err != nil {
		return 0, err
	}
	build := revoked(id, cause)
	p := s.withEvents(func(r storage.TxResult) []events.Event {
		evs := build(r)
		for i := range evs {
			evs[i].Data = withAdmin(ctx, evs[i].Data)
		}
		return evs
	})
	n, err := s.store.DeleteUserSessions(ctx, id, "", p.tx())
	if err != nil {
		return 0, err
	}
	s.observeAll(ctx, p.stored(storage.TxResult{Ended: n}))
	return n, nil
}

// revoked builds session.revoked for the sessions a write ended, if any.
func revoked(userID, cause string) func(storage.TxResult) []events.Event {
	return func(r storage.TxResult) []events.Event {
		if r.Ended == 0 {
			return nil
		}
		return []events.Event{{Type: events.SessionRevoked, UserID: userID, Data: map[string]any{"sessions": r.Ended, "cause": cause}}}
	}
}

// SetKept marks a user kept (never expired) or not, reporting UserKept.
// model.ErrNotFound means there is no such user.
func (s *Service) SetKept(ctx context.Context, id string, kept bool, cause string) (*model.User, error) {
	u, err := s.store.UpdateUser(ctx, id, func(u *model.User) error {
		u.Kept = kept
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	s.observe(ctx, events.Event{Type: UserKept, UserID: id, Data: withAdmin(ctx, map[string]any{"kept": kept, "cause": cause})})
	return u, nil
}

// observeRefresh reports a refresh token presented again.
func (s *Service) observeRefresh(ctx context.Context, clientID string, err error) {
	if errors.Is(err, ErrRefreshReuse) {
		s.observe(ctx, events.Event{Type: events.RefreshReuseDetected, ClientID: clientID, Data: map[string]any{"client_ip": clientIPOf(ctx)}})
	}
}

package accounts

import (
	"time"

	"github.com/google/uuid"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// newGuest is the one constructor of guest users, however they come (the
// token endpoint, a device key, a browser): username guest_<id>, tag
// guest-user, no password. Ids are time-ordered (UUIDv7), so a new guest's
// records go at the end of every B-tree keyed by them instead of at random
// places.
func newGuest(now time.Time) (*model.User, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	return &model.User{
		ID:        id.String(),
		Name:      model.GuestNamePrefix + id.String(),
		Tag:       model.TagGuest,
		CreatedAt: now,
		UpdatedAt: now,
	}, nil
}

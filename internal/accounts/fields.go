package accounts

import (
	"errors"
	"strings"

	"github.com/guestauth/caddy-guestauth/internal/model"
)

// FieldErrors is several refusals of one request, one per field at fault, so
// a form can show every problem at once instead of one per submission. It
// unwraps to each, in field order, so errors.As finds the first: a caller
// that shows one message shows that one.
type FieldErrors []*Error

func (r FieldErrors) Error() string {
	msgs := make([]string, len(r))
	for i, e := range r {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (r FieldErrors) Unwrap() []error {
	out := make([]error, len(r))
	for i, e := range r {
		out[i] = e
	}
	return out
}

// CheckNewAccount is the part of a sign-up's checks that needs no store:
// the username's form and whether it is reserved, and the password's
// length. It returns nil, or FieldErrors with a refusal per field at fault
// (invalid_name, then invalid_password). Whether the name is taken is known
// only when it is claimed (UpdateProfile, RegisterBrowser).
func (s *Service) CheckNewAccount(name, password string) error {
	var out FieldErrors
	name = strings.TrimSpace(name)
	var nameErr error
	if nameErr = ValidateName(name); nameErr == nil && s.names.reserved[model.NameKey(name)] {
		nameErr = refuse(CodeInvalidName, "The username %q is reserved.", name)
	}
	for _, err := range []error{nameErr, checkPasswordLength(password)} {
		var e *Error
		switch {
		case err == nil:
		case errors.As(err, &e):
			out = append(out, e)
		default: // the length check's plain error
			out = append(out, refuse(CodeInvalidPassword, "A password must be %d to %d characters.", MinPasswordLength, MaxPasswordLength).(*Error))
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

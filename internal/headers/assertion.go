package headers

import (
	"net/http"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
)

// Assertion signs the identity assertion header: a JWT (typ
// assertion+jwt) of the user, signed with the token keys, so an app that
// can also be reached by other paths can verify who a request is from.
// Assertions are cached per user version, issuer and audience, and
// re-signed when half their lifetime is gone.
type Assertion struct {
	Header   string        // the header carrying it
	Lifetime time.Duration // how long each is valid
	Keys     *tokens.Keyring
	Alg      jwa.SignatureAlgorithm
	Now      func() time.Time

	mu    sync.Mutex
	cache map[assertionKey]assertionEntry
}

type assertionKey struct {
	user, aud, iss string
	version        int64 // User.UpdatedAt: a rename or upgrade re-signs
}

type assertionEntry struct {
	jwt     string
	renewAt time.Time
}

// maxAssertions bounds the cache; when full it starts over.
const maxAssertions = 10_000

// Set sets the assertion of u, for the issuer iss and the audience aud,
// on h.
func (a *Assertion) Set(h http.Header, u *model.User, iss, aud string) error {
	key := assertionKey{user: u.ID, aud: aud, iss: iss, version: u.UpdatedAt.UnixNano()}
	now := a.Now()
	a.mu.Lock()
	e, ok := a.cache[key]
	a.mu.Unlock()
	if !ok || !now.Before(e.renewAt) {
		iat := now.Truncate(time.Second)
		life := a.Lifetime.Round(time.Second)
		jwt, err := a.Keys.SignAssertion(a.Alg, tokens.Assertion{
			Issuer: iss, Audience: aud, Subject: u.ID, Name: u.Name, Tag: u.Tag,
			Anonymous: u.IsAnonymous(), IssuedAt: iat, Expires: iat.Add(life),
		})
		if err != nil {
			return err
		}
		e = assertionEntry{jwt: jwt, renewAt: iat.Add(life / 2)}
		a.mu.Lock()
		if a.cache == nil || len(a.cache) >= maxAssertions {
			a.cache = map[assertionKey]assertionEntry{}
		}
		a.cache[key] = e
		a.mu.Unlock()
	}
	h.Set(a.Header, e.jwt)
	return nil
}

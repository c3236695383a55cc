package accounts_test

import (
	"testing"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/webauthntest"
)

// The last way in counts every way: a passkey keeps a provider link
// removable and a link keeps a passkey removable; a verified email
// address counts only when the site sends mail (without a mailer no
// sign-in link can reach it).
func TestLastWayInCountsEveryWay(t *testing.T) {
	t.Parallel()
	for _, mailer := range []bool{false, true} {
		f := newEmailFixture(t, func(c *accounts.Config) {
			if !mailer {
				c.Mailer = nil
			}
		})
		pk := newPasskeys(t, f.fixture)
		a := webauthntest.New(t, issuer)
		member := func(sub string) *accounts.Identity {
			t.Helper()
			login, _, err := f.svc.ProviderSignIn(bg, nil, issuer, pid(sub, ""), "192.0.2.1")
			if err != nil {
				t.Fatal(err)
			}
			return identityOf(t, f.fixture, login)
		}

		// A provider's member with a passkey: the link can go, then the
		// passkey cannot.
		id := member("p1")
		reg, cred := register(t, pk, a, id, "k1")
		id = identityOf(t, f.fixture, reg.Login)
		if err := f.svc.UnlinkProvider(bg, id, idpIssuer, "p1"); err != nil {
			t.Fatalf("mailer %v: unlinking with a passkey left: %v", mailer, err)
		}
		wantCode(t, pk.Remove(bg, id, cred), accounts.CodeLastSignIn)

		// A provider's member: with a passkey saved, the passkey can go,
		// then the link cannot.
		id = member("p2")
		reg, cred = register(t, pk, a, id, "k2")
		id = identityOf(t, f.fixture, reg.Login)
		if err := pk.Remove(bg, id, cred); err != nil {
			t.Fatalf("mailer %v: removing a passkey with a provider left: %v", mailer, err)
		}
		wantCode(t, f.svc.UnlinkProvider(bg, id, idpIssuer, "p2"), accounts.CodeLastWayIn)

		// A verified address is a way in only with mail.
		verify := func(id *accounts.Identity, addr string) {
			t.Helper()
			if _, err := f.store.UpdateUser(bg, id.User.ID, func(u *model.User) error {
				u.Email, u.EmailVerified = addr, true
				return nil
			}, nil); err != nil {
				t.Fatal(err)
			}
		}
		id = member("p3")
		verify(id, "p3@example.test")
		err := f.svc.UnlinkProvider(bg, id, idpIssuer, "p3")
		if mailer && err != nil {
			t.Fatalf("unlinking with a verified address and mail: %v", err)
		} else if !mailer {
			wantCode(t, err, accounts.CodeLastWayIn)
		}
		id = member("p4")
		reg, cred = register(t, pk, a, id, "k4")
		id = identityOf(t, f.fixture, reg.Login)
		verify(id, "p4@example.test")
		if err := f.svc.UnlinkProvider(bg, id, idpIssuer, "p4"); err != nil {
			t.Fatal(err)
		}
		err = pk.Remove(bg, id, cred)
		if mailer && err != nil {
			t.Fatalf("removing a passkey with a verified address and mail: %v", err)
		} else if !mailer {
			wantCode(t, err, accounts.CodeLastSignIn)
		}
	}
}

package accounts_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwk"

	"github.com/guestauth/caddy-guestauth/internal/accounts"
	"github.com/guestauth/caddy-guestauth/internal/jwstest"
	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/internal/tokens"
	"github.com/guestauth/caddy-guestauth/storage"
)

const devIssuer = "https://device.example.com"

// devFixture is a Service on a temporary store with a settable clock.
type devFixture struct {
	*clock
	svc   *accounts.Service
	store storage.Backend
}

func newDevFixture(t *testing.T) *devFixture {
	t.Helper()
	st := openStore(t)
	keys, err := tokens.LoadKeyring(bg, st)
	if err != nil {
		t.Fatal(err)
	}
	f := &devFixture{store: st, clock: &clock{t: time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)}}
	f.svc, err = accounts.New(bg, st, keys, accounts.Config{
		Alg: jwa.ES256, AccessTTL: time.Hour, SessionIdle: 24 * time.Hour, SessionLifetime: 72 * time.Hour, Skew: 30 * time.Second,
		Audiences: []string{"app", "other-app"},
	}, f.Now)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *devFixture) challenge(t *testing.T) string {
	t.Helper()
	c, err := f.svc.NewChallenge(bg, accounts.PurposeAnonymousRequest, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	return c.Token
}

// devKey is a device key pair as an app would keep it.
type devKey struct {
	alg  jwa.SignatureAlgorithm
	kid  string
	priv crypto.Signer
	jwk  map[string]any // the public key as a JWT header value
}

var rsaPool = struct {
	sync.Mutex
	keys []*rsa.PrivateKey
}{}

// rsaKey returns the i-th cached RSA-2048 key (generation is slow).
func rsaKey(t *testing.T, i int) *rsa.PrivateKey {
	t.Helper()
	rsaPool.Lock()
	defer rsaPool.Unlock()
	for len(rsaPool.keys) <= i {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		rsaPool.keys = append(rsaPool.keys, k)
	}
	return rsaPool.keys[i]
}

func randomKID(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func newDevKeyFrom(t *testing.T, alg jwa.SignatureAlgorithm, priv crypto.Signer) *devKey {
	t.Helper()
	k := &devKey{alg: alg, kid: randomKID(t), priv: priv}
	pub, err := jwk.FromRaw(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pub.Set(jwk.KeyIDKey, k.kid)
	pub.Set(jwk.AlgorithmKey, alg)
	k.jwk = jsonMap(t, pub)
	return k
}

func newECKey(t *testing.T) *devKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newDevKeyFrom(t, jwa.ES256, priv)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonMap(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// signCompact builds a compact JWS over exactly the given header and claims;
// alg "none" leaves the signature empty.
func signCompact(t *testing.T, hdr, claims map[string]any, alg jwa.SignatureAlgorithm, key any) string {
	t.Helper()
	tok, err := jwstest.Compact(hdr, claims, alg, key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// request is the JWT an Authgear SDK sends: typ, kid, alg and (when new)
// jwk; iat, exp = iat + 60s, challenge, action auth. edit may change the
// header and claims before signing.
func (k *devKey) request(t *testing.T, challenge string, now time.Time, withJWK bool, edit func(hdr, claims map[string]any)) string {
	t.Helper()
	hdr := map[string]any{"typ": accounts.AnonymousRequestType, "alg": k.alg.String(), "kid": k.kid}
	if withJWK {
		hdr["jwk"] = k.jwk
	}
	claims := map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "challenge": challenge, "action": accounts.ActionAuth}
	if edit != nil {
		edit(hdr, claims)
	}
	return signCompact(t, hdr, claims, k.alg, k.priv)
}

func wantDeviceRefusal(t *testing.T, res *accounts.DeviceResult, err error, code string) *accounts.Error {
	t.Helper()
	var ae *accounts.Error
	if !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("got %+v, %v; want an accounts.Error %s", res, err, code)
	}
	if res != nil {
		t.Fatalf("a refusal returned a result: %+v", res)
	}
	return ae
}

func wantNoDevice(t *testing.T, f *devFixture, kid string) {
	t.Helper()
	if d, err := f.store.GetDevice(bg, kid); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("device %s was stored: %+v, %v", kid, d, err)
	}
}

func TestDeviceKeyCreatesGuestAndSignsInAgain(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(t *testing.T) *devKey
	}{
		{"RS256", func(t *testing.T) *devKey { return newDevKeyFrom(t, jwa.RS256, rsaKey(t, 0)) }},
		{"ES256", newECKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDevFixture(t)
			k := tc.key(t)
			c, err := f.svc.NewChallenge(bg, accounts.PurposeAnonymousRequest, "192.0.2.1")
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Token) != 32 || !c.ExpiresAt.Equal(f.Now().Add(5*time.Minute)) {
				t.Fatalf("challenge: %+v", c)
			}
			first, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, c.Token, f.Now(), true, nil))
			if err != nil {
				t.Fatal(err)
			}
			u := first.User
			if id, err := uuid.Parse(u.ID); err != nil || id.Version() != 7 {
				t.Fatalf("device guest id %q is not a UUIDv7 (%v)", u.ID, err)
			}
			if !first.Created || !strings.HasPrefix(u.Name, model.GuestNamePrefix) || u.Name != model.GuestNamePrefix+u.ID ||
				u.Tag != model.TagGuest || !u.IsAnonymous() || u.DeviceKID != k.kid || u.PasswordHash != "" {
				t.Fatalf("created guest: %+v (created %v)", u, first.Created)
			}
			tok := first.Tokens
			if tok.AccessToken == "" || tok.IDToken == "" || tok.RefreshToken == "" || tok.TokenType != "Bearer" || tok.Scope != "openid" {
				t.Fatalf("token response: %+v", tok)
			}
			dev, err := f.store.GetDevice(bg, k.kid)
			if err != nil || dev.UserID != u.ID {
				t.Fatalf("stored device: %+v, %v", dev, err)
			}
			stored, err := jwk.ParseKey(dev.JWK)
			if err != nil || stored.KeyID() != k.kid || stored.Algorithm() != k.alg {
				t.Fatalf("stored key: %s, %v", dev.JWK, err)
			}
			if _, ok := stored.(interface{ D() []byte }); ok {
				t.Fatal("a private key was stored")
			}

			f.Advance(time.Hour)
			again, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, f.challenge(t), f.Now(), false, nil))
			if err != nil {
				t.Fatal(err)
			}
			if again.Created || again.User.ID != u.ID || again.Session.ID == first.Session.ID {
				t.Fatalf("re-login: created %v, user %s (want %s), session %s (first %s)", again.Created, again.User.ID, u.ID, again.Session.ID, first.Session.ID)
			}
			// An SDK may keep sending the jwk: still the same user.
			third, err := f.svc.AnonymousRequest(bg, devIssuer, "other-app", "192.0.2.1", k.request(t, f.challenge(t), f.Now(), true, nil))
			if err != nil || third.User.ID != u.ID || third.Created {
				t.Fatalf("re-login with jwk: %+v, %v", third, err)
			}
			id, err := f.svc.Authenticate(bg, again.Tokens.AccessToken, devIssuer)
			if err != nil || id.User.ID != u.ID || id.Session.ID != again.Session.ID {
				t.Fatalf("authenticate re-login token: %+v, %v", id, err)
			}
		})
	}
}

func TestDeviceChallengeIsSingleUse(t *testing.T) {
	f := newDevFixture(t)
	k1, k2 := newECKey(t), newECKey(t)
	ch := f.challenge(t)
	if _, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k1.request(t, ch, f.Now(), true, nil)); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k2.request(t, ch, f.Now(), true, nil))
	wantDeviceRefusal(t, res, err, accounts.CodeInvalidGrant)
	wantNoDevice(t, f, k2.kid)
	res, err = f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k1.request(t, ch, f.Now(), false, nil))
	wantDeviceRefusal(t, res, err, accounts.CodeInvalidGrant)
}

func TestDeviceChallengeConcurrentUseHasOneWinner(t *testing.T) {
	f := newDevFixture(t)
	ch := f.challenge(t)
	const n = 8
	keys := make([]*devKey, n)
	reqs := make([]string, n)
	for i := range keys {
		keys[i] = newECKey(t)
		reqs[i] = keys[i].request(t, ch, f.Now(), true, nil)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", reqs[i])
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, err := range errs {
		var ae *accounts.Error
		switch {
		case err == nil:
			wins++
			if _, gerr := f.store.GetDevice(bg, keys[i].kid); gerr != nil {
				t.Fatalf("winner's device: %v", gerr)
			}
		case errors.As(err, &ae) && ae.Code == accounts.CodeInvalidGrant:
			wantNoDevice(t, f, keys[i].kid)
		default:
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d requests used one challenge, want exactly 1", wins)
	}
}

func TestDeviceConcurrentFirstUseOfOneKeyGivesOneUser(t *testing.T) {
	f := newDevFixture(t)
	k := newECKey(t)
	const n = 4
	reqs := make([]string, n)
	for i := range reqs {
		reqs[i] = k.request(t, f.challenge(t), f.Now(), true, nil)
	}
	res := make([]*accounts.DeviceResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res[i], errs[i] = f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", reqs[i])
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if res[i].User.ID != res[0].User.ID {
			t.Fatalf("one key gave two users: %s, %s", res[i].User.ID, res[0].User.ID)
		}
		if res[i].Created {
			created++
		}
	}
	if created != 1 {
		t.Fatalf("%d requests report creating the guest, want 1", created)
	}
}

func TestDeviceChallengeExpiry(t *testing.T) {
	f := newDevFixture(t)
	k := newECKey(t)
	ch := f.challenge(t)
	f.Advance(5*time.Minute + time.Second)
	res, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, ch, f.Now(), true, nil))
	ae := wantDeviceRefusal(t, res, err, accounts.CodeInvalidGrant)
	if !strings.Contains(ae.Description, "challenge") {
		t.Fatalf("description: %q", ae.Description)
	}
	wantNoDevice(t, f, k.kid)

	ch = f.challenge(t)
	f.Advance(5*time.Minute - time.Second)
	if _, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, ch, f.Now(), true, nil)); err != nil {
		t.Fatalf("a challenge used just before it expires: %v", err)
	}
}

func TestDeviceChallengePurpose(t *testing.T) {
	f := newDevFixture(t)
	for _, p := range []string{"", "biometric_request", "app2app_request", "ANONYMOUS_REQUEST"} {
		c, err := f.svc.NewChallenge(bg, p, "192.0.2.1")
		var ae *accounts.Error
		if !errors.As(err, &ae) || ae.Code != accounts.CodeInvalidRequest || c != nil {
			t.Fatalf("purpose %q: %+v, %v", p, c, err)
		}
	}
	// A challenge issued for another purpose cannot be used here.
	now := f.Now()
	if err := f.store.PutChallenge(bg, "OTHERPURPOSE", model.Challenge{Purpose: "biometric_request", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	k := newECKey(t)
	res, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, "OTHERPURPOSE", now, true, nil))
	wantDeviceRefusal(t, res, err, accounts.CodeInvalidGrant)
	wantNoDevice(t, f, k.kid)
}

func TestDeviceRequestRefusals(t *testing.T) {
	f := newDevFixture(t)
	ecOther := newECKey(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set := func(kv ...any) func(hdr, claims map[string]any) {
		return func(hdr, claims map[string]any) {
			for i := 0; i+2 < len(kv); i += 3 {
				m := claims
				if kv[i] == "hdr" {
					m = hdr
				}
				if kv[i+2] == nil {
					delete(m, kv[i+1].(string))
				} else {
					m[kv[i+1].(string)] = kv[i+2]
				}
			}
		}
	}
	type build func(t *testing.T, k *devKey, ch string, now time.Time) string
	edited := func(edit func(hdr, claims map[string]any)) build {
		return func(t *testing.T, k *devKey, ch string, now time.Time) string {
			return k.request(t, ch, now, true, edit)
		}
	}
	// raw signs header and claims as given, with another algorithm or key.
	raw := func(alg jwa.SignatureAlgorithm, key any, edit func(hdr, claims map[string]any)) build {
		return func(t *testing.T, k *devKey, ch string, now time.Time) string {
			hdr := map[string]any{"typ": accounts.AnonymousRequestType, "alg": alg.String(), "kid": k.kid, "jwk": k.jwk}
			claims := map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "challenge": ch, "action": "auth"}
			if edit != nil {
				edit(hdr, claims)
			}
			return signCompact(t, hdr, claims, alg, key)
		}
	}
	now := f.Now()
	// textual edits of the header and claims JSON, for what no map can
	// hold (duplicate names, invalid UTF-8); signed with the device's key.
	text := func(edit func(hdr, claims string) (string, string)) build {
		return func(t *testing.T, k *devKey, ch string, now time.Time) string {
			hdr := map[string]any{"typ": accounts.AnonymousRequestType, "alg": k.alg.String(), "kid": k.kid, "jwk": k.jwk}
			claims := map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "challenge": ch, "action": "auth"}
			h, c := edit(string(mustJSON(t, hdr)), string(mustJSON(t, claims)))
			tok, err := jwstest.CompactJSON(h, c, k.alg, k.priv)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
	}
	// add appends a member to a JSON object's text.
	add := func(obj, member string) string { return obj[:len(obj)-1] + "," + member + "}" }
	cases := []struct {
		name  string
		build build
		code  string
		want  string // in the description
	}{
		{"expired JWT", edited(set("c", "iat", now.Add(-10*time.Minute).Unix(), "c", "exp", now.Add(-9*time.Minute).Unix())), accounts.CodeInvalidGrant, "has expired"},
		{"exp too far after iat", edited(set("c", "exp", now.Add(6*time.Minute).Unix())), accounts.CodeInvalidGrant, "at most 5m0s later"},
		{"exp before iat", edited(set("c", "exp", now.Add(-time.Second).Unix())), accounts.CodeInvalidGrant, "exp must be after iat"},
		{"iat in the future", edited(set("c", "iat", now.Add(2*time.Minute).Unix(), "c", "exp", now.Add(3*time.Minute).Unix())), accounts.CodeInvalidGrant, "iat is in the future"},
		{"no iat", edited(set("c", "iat", nil)), accounts.CodeInvalidGrant, "iat is required"},
		{"no exp", edited(set("c", "exp", nil)), accounts.CodeInvalidGrant, "exp is required"},
		{"string exp", edited(set("c", "exp", "soon")), accounts.CodeInvalidGrant, "payload has a member of the wrong type"},
		{"no challenge", edited(set("c", "challenge", nil)), accounts.CodeInvalidGrant, "needs a challenge"},
		{"unknown challenge", edited(set("c", "challenge", "NOSUCHCHALLENGE")), accounts.CodeInvalidGrant, "challenge is unknown"},
		{"other action", edited(set("c", "action", "login")), accounts.CodeInvalidGrant, "action must be"},
		{"no action", edited(set("c", "action", nil)), accounts.CodeInvalidGrant, "action must be"},
		{"promote action", edited(set("c", "action", accounts.ActionPromote)), accounts.CodeInvalidRequest, "not supported"},
		{"typ JWT", edited(set("hdr", "typ", "JWT")), accounts.CodeInvalidGrant, "typ must be"},
		{"no typ", edited(set("hdr", "typ", nil)), accounts.CodeInvalidGrant, "typ must be"},
		{"biometric typ", edited(set("hdr", "typ", "vnd.authgear.biometric-request")), accounts.CodeInvalidGrant, "typ must be"},
		{"kid too short", edited(set("hdr", "kid", "short")), accounts.CodeInvalidGrant, "kid must be"},
		{"kid too long", edited(set("hdr", "kid", strings.Repeat("k", 65))), accounts.CodeInvalidGrant, "kid must be"},
		{"kid bad characters", edited(set("hdr", "kid", "kid with spaces!")), accounts.CodeInvalidGrant, "kid must be"},
		{"no kid", edited(set("hdr", "kid", nil)), accounts.CodeInvalidGrant, "kid must be"},
		{"crit header", edited(set("hdr", "crit", []string{"exp"}, "hdr", "exp", 1)), accounts.CodeInvalidGrant, "crit or b64"},
		{"b64 false", edited(set("hdr", "b64", false)), accounts.CodeInvalidGrant, "crit or b64"},
		{"unknown kid without jwk", func(t *testing.T, k *devKey, ch string, now time.Time) string {
			return k.request(t, ch, now, false, nil)
		}, accounts.CodeInvalidGrant, "must carry its public key"},
		{"jwk kid differs", edited(func(hdr, _ map[string]any) {
			j := map[string]any{}
			for n, v := range hdr["jwk"].(map[string]any) {
				j[n] = v
			}
			j["kid"] = "another-key-id"
			hdr["jwk"] = j
		}), accounts.CodeInvalidGrant, "jwk kid must equal"},
		{"jwk alg differs", edited(func(hdr, _ map[string]any) {
			j := map[string]any{}
			for n, v := range hdr["jwk"].(map[string]any) {
				j[n] = v
			}
			j["alg"] = "ES384"
			hdr["jwk"] = j
		}), accounts.CodeInvalidGrant, "jwk alg must equal"},
		{"wrong key on first use", edited(func(hdr, _ map[string]any) {
			j := map[string]any{}
			for n, v := range ecOther.jwk {
				j[n] = v
			}
			j["kid"] = hdr["kid"] // a well-formed header whose jwk did not sign
			hdr["jwk"] = j
		}), accounts.CodeInvalidGrant, "signature does not verify"},
		{"tampered payload", func(t *testing.T, k *devKey, ch string, now time.Time) string {
			good := strings.Split(k.request(t, ch, now, true, nil), ".")
			other := strings.Split(k.request(t, ch, now.Add(time.Second), true, nil), ".")
			return good[0] + "." + other[1] + "." + good[2]
		}, accounts.CodeInvalidGrant, "signature does not verify"},
		{"alg none", raw(jwa.NoSignature, nil, nil), accounts.CodeInvalidGrant, "alg must be RS256 or ES256"},
		{"HS256", raw(jwa.HS256, []byte("0123456789abcdef0123456789abcdef"), nil), accounts.CodeInvalidGrant, "alg must be RS256 or ES256"},
		{"ES384", raw(jwa.ES384, p384, func(hdr, _ map[string]any) { hdr["jwk"] = newDevKeyFrom(t, jwa.ES384, p384).jwk }), accounts.CodeInvalidGrant, "alg must be RS256 or ES256"},
		{"PS256", raw(jwa.PS256, rsaKey(t, 1), func(hdr, _ map[string]any) { hdr["jwk"] = newDevKeyFrom(t, jwa.PS256, rsaKey(t, 1)).jwk }), accounts.CodeInvalidGrant, "alg must be RS256 or ES256"},
		{"RS256 header with an EC jwk", raw(jwa.RS256, rsaKey(t, 1), func(hdr, _ map[string]any) {
			j := map[string]any{}
			for n, v := range hdr["jwk"].(map[string]any) {
				j[n] = v
			}
			delete(j, "alg") // so the key type itself is checked
			hdr["jwk"] = j
		}), accounts.CodeInvalidGrant, "key type does not match"},
		{"RSA-1024", raw(jwa.RS256, small, func(hdr, _ map[string]any) {
			j := newDevKeyFrom(t, jwa.RS256, small).jwk
			delete(j, "kid")
			hdr["jwk"] = j
		}), accounts.CodeInvalidGrant, "2048 to 4096 bits"},
		{"P-384 key with ES256", func(t *testing.T, k *devKey, ch string, now time.Time) string {
			j := newDevKeyFrom(t, jwa.ES256, p384).jwk
			delete(j, "kid")
			hdr := map[string]any{"typ": accounts.AnonymousRequestType, "alg": "ES256", "kid": k.kid, "jwk": j}
			claims := map[string]any{"iat": now.Unix(), "exp": now.Add(time.Minute).Unix(), "challenge": ch, "action": "auth"}
			return signCompact(t, hdr, claims, jwa.ES384, p384) // signature never checked: the key is refused first
		}, accounts.CodeInvalidGrant, "P-256 curve"},
		{"private jwk", edited(func(hdr, _ map[string]any) {
			priv, err := jwk.FromRaw(ecOther.priv)
			if err != nil {
				t.Fatal(err)
			}
			hdr["jwk"] = jsonMap(t, priv)
			delete(hdr["jwk"].(map[string]any), "kid")
		}), accounts.CodeInvalidGrant, "must be a public key"},
		{"not a JWS", func(*testing.T, *devKey, string, time.Time) string { return "not-a-jwt" }, accounts.CodeInvalidGrant, "not a compact JWS"},
		{"JWS JSON serialization", func(t *testing.T, k *devKey, ch string, now time.Time) string {
			p := strings.Split(k.request(t, ch, now, true, nil), ".")
			return `{"protected":"` + p[0] + `","payload":"` + p[1] + `","signature":"` + p[2] + `"}`
		}, accounts.CodeInvalidGrant, "not a compact JWS"},
		{"oversized", edited(set("c", "pad", strings.Repeat("x", 9000))), accounts.CodeInvalidGrant, "not a compact JWS"},
		// The JSON rules of the one verifier access tokens share.
		{"header duplicate alg", text(func(h, c string) (string, string) { return add(h, `"alg":"none"`), c }), accounts.CodeInvalidGrant, "duplicate member name"},
		{"header duplicate kid", text(func(h, c string) (string, string) { return add(h, `"kid":"another-key-id"`), c }), accounts.CodeInvalidGrant, "duplicate member name"},
		{"header case-folded typ", text(func(h, c string) (string, string) { return add(h, `"TYP":"JWT"`), c }), accounts.CodeInvalidGrant, "case-folded member name"},
		{"header case-folded jwk", text(func(h, c string) (string, string) { return add(h, `"JWK":{}`), c }), accounts.CodeInvalidGrant, "case-folded member name"},
		{"duplicate inside the jwk", text(func(h, c string) (string, string) {
			return strings.Replace(h, `"kty":`, `"kty":"RSA","kty":`, 1), c
		}), accounts.CodeInvalidGrant, "duplicate member name"},
		{"empty crit", text(func(h, c string) (string, string) { return add(h, `"crit":[]`), c }), accounts.CodeInvalidGrant, "crit or b64"},
		{"header not an object", text(func(_, c string) (string, string) { return `["ES256"]`, c }), accounts.CodeInvalidGrant, "header is not a JSON object"},
		{"payload duplicate challenge", text(func(h, c string) (string, string) { return h, add(c, `"challenge":"OTHERCHALLENGE"`) }), accounts.CodeInvalidGrant, "duplicate member name"},
		{"payload duplicate exp", text(func(h, c string) (string, string) { return h, add(c, `"exp":99999999999`) }), accounts.CodeInvalidGrant, "duplicate member name"},
		{"payload escaped duplicate action", text(func(h, c string) (string, string) { return h, add(c, `"action":"promote"`) }), accounts.CodeInvalidGrant, "duplicate member name"},
		{"payload case-folded action", text(func(h, c string) (string, string) { return h, add(c, `"Action":"promote"`) }), accounts.CodeInvalidGrant, "case-folded member name"},
		{"payload case-folded exp", text(func(h, c string) (string, string) { return h, add(c, `"EXP":99999999999`) }), accounts.CodeInvalidGrant, "case-folded member name"},
		{"payload invalid UTF-8", text(func(h, c string) (string, string) { return h, add(c, "\"x\":\"\xff\"") }), accounts.CodeInvalidGrant, "payload is not valid JSON"},
		{"payload trailing data", text(func(h, c string) (string, string) { return h, c + "{}" }), accounts.CodeInvalidGrant, "payload is not valid JSON"},
		{"payload array", text(func(h, _ string) (string, string) { return h, `[]` }), accounts.CodeInvalidGrant, "payload is not a JSON object"},
		{"null exp", edited(set("c", "exp", json.RawMessage("null"))), accounts.CodeInvalidGrant, "exp is required"},
		{"exp beyond year 9999", edited(set("c", "exp", 1e12)), accounts.CodeInvalidGrant, "payload has a member of the wrong type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k := newECKey(t)
			ch := f.challenge(t)
			res, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", tc.build(t, k, ch, f.Now()))
			if ae := wantDeviceRefusal(t, res, err, tc.code); !strings.Contains(ae.Description, tc.want) {
				t.Fatalf("description %q, want it to say %q", ae.Description, tc.want)
			}
			wantNoDevice(t, f, k.kid)
		})
	}
}

func TestDeviceKnownKidUsesOnlyTheStoredKey(t *testing.T) {
	f := newDevFixture(t)
	k := newECKey(t)
	first, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, f.challenge(t), f.Now(), true, nil))
	if err != nil {
		t.Fatal(err)
	}
	before, err := f.store.GetDevice(bg, k.kid)
	if err != nil {
		t.Fatal(err)
	}
	// An attacker who knows the kid (it is not a secret) brings its own keys.
	evilEC := newECKey(t)
	evilEC.kid = k.kid
	evilEC.jwk["kid"] = k.kid
	evilRSA := newDevKeyFrom(t, jwa.RS256, rsaKey(t, 0))
	evilRSA.kid = k.kid
	evilRSA.jwk["kid"] = k.kid
	attempts := map[string]string{
		"own key in header":  evilEC.request(t, f.challenge(t), f.Now(), true, nil),
		"own key, no header": evilEC.request(t, f.challenge(t), f.Now(), false, nil),
		"RS256 with own key": evilRSA.request(t, f.challenge(t), f.Now(), true, nil),
		"HS256 with the pubkey": signCompact(t,
			map[string]any{"typ": accounts.AnonymousRequestType, "alg": "HS256", "kid": k.kid},
			map[string]any{"iat": f.Now().Unix(), "exp": f.Now().Add(time.Minute).Unix(), "challenge": f.challenge(t), "action": "auth"},
			jwa.HS256, before.JWK),
		"alg none": signCompact(t,
			map[string]any{"typ": accounts.AnonymousRequestType, "alg": "none", "kid": k.kid},
			map[string]any{"iat": f.Now().Unix(), "exp": f.Now().Add(time.Minute).Unix(), "challenge": f.challenge(t), "action": "auth"},
			jwa.NoSignature, nil),
	}
	for name, req := range attempts {
		res, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", req)
		if res != nil || err == nil {
			t.Fatalf("%s: signed in as %s", name, res.User.ID)
		}
		wantDeviceRefusal(t, res, err, accounts.CodeInvalidGrant)
	}
	after, err := f.store.GetDevice(bg, k.kid)
	if err != nil || string(after.JWK) != string(before.JWK) || after.UserID != first.User.ID {
		t.Fatalf("the stored key changed: %s -> %s (%v)", before.JWK, after.JWK, err)
	}
	again, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, f.challenge(t), f.Now(), false, nil))
	if err != nil || again.User.ID != first.User.ID {
		t.Fatalf("the real device: %+v, %v", again, err)
	}
}

func TestDeviceKeyOfUpgradedUserRefused(t *testing.T) {
	f := newDevFixture(t)
	k := newECKey(t)
	first, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, f.challenge(t), f.Now(), true, nil))
	if err != nil {
		t.Fatal(err)
	}
	// A name-only upgrade as /api/update-user does it: a real name and the
	// normal tag. The key is still the user's only credential.
	if _, err := f.store.UpdateUser(bg, first.User.ID, func(u *model.User) error {
		u.Name, u.Tag = "alice", model.TagNormal
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	again, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, f.challenge(t), f.Now(), false, nil))
	if err != nil || again.User.ID != first.User.ID || again.User.Name != "alice" {
		t.Fatalf("passwordless normal user's key: %+v, %v", again, err)
	}
	// Once it has a password, the key is no longer a credential.
	if _, err := f.store.UpdateUser(bg, first.User.ID, func(u *model.User) error {
		u.PasswordHash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
		return nil
	}, nil); err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.AnonymousRequest(bg, devIssuer, "app", "192.0.2.1", k.request(t, f.challenge(t), f.Now(), false, nil))
	ae := wantDeviceRefusal(t, res, err, accounts.CodeInvalidGrant)
	if !errors.Is(err, accounts.ErrNotAGuest) || !strings.Contains(ae.Description, "sign in") {
		t.Fatalf("refusal: %v (%q)", err, ae.Description)
	}
}

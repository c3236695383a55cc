// Package webauthntest is a software WebAuthn authenticator for tests:
// it answers a relying party's creation and request options the way a
// browser relays a platform authenticator's answers, so tests run the
// real verification of github.com/go-webauthn/webauthn end to end. Test
// code only.
package webauthntest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"sync"
	"testing"

	"github.com/go-webauthn/webauthn/protocol/webauthncbor"
)

// Authenticator is a software WebAuthn authenticator (one ES256 key per
// credential, "none" attestation, a signature counter, backup flags): it
// answers the options the relying party sends exactly as a browser
// relays a platform authenticator's answers, so the tests run the real
// verification of the library end to end.
type Authenticator struct {
	t      testing.TB
	origin string
	mu     sync.Mutex
	creds  map[string]*softCred // by credential id (base64url)
}

type softCred struct {
	id         []byte
	key        *ecdsa.PrivateKey
	rpID       string
	userHandle []byte
	count      uint32
}

// New is an authenticator whose browser is at origin (the clientData
// origin it reports).
func New(t testing.TB, origin string) *Authenticator {
	return &Authenticator{t: t, origin: origin, creds: map[string]*softCred{}}
}

var b64u = base64.RawURLEncoding

// readOptions reads the challenge and RP id of create or get options.
func readOptions(t testing.TB, raw []byte) (challenge, rpID string, userID []byte) {
	t.Helper()
	var o struct {
		PublicKey struct {
			Challenge string `json:"challenge"`
			RP        struct {
				ID string `json:"id"`
			} `json:"rp"`
			RPID string `json:"rpId"`
			User struct {
				ID string `json:"id"`
			} `json:"user"`
		} `json:"publicKey"`
	}
	if err := json.Unmarshal(raw, &o); err != nil {
		t.Fatalf("options %s: %v", raw, err)
	}
	rpID = o.PublicKey.RP.ID
	if rpID == "" {
		rpID = o.PublicKey.RPID
	}
	if o.PublicKey.User.ID != "" {
		var err error
		if userID, err = b64u.DecodeString(o.PublicKey.User.ID); err != nil {
			t.Fatal(err)
		}
	}
	return o.PublicKey.Challenge, rpID, userID
}

// Authenticator data flags.
const (
	FlagUP = 0x01
	FlagUV = 0x04
	FlagBE = 0x08
	FlagBS = 0x10
	FlagAT = 0x40
)

func (a *Authenticator) clientData(typ, challenge string) []byte {
	cd, _ := json.Marshal(map[string]any{"type": typ, "challenge": challenge, "origin": a.origin, "crossOrigin": false})
	return cd
}

// Create answers navigator.credentials.create(options).
func (a *Authenticator) Create(options []byte) (resp []byte, credID string) {
	a.t.Helper()
	challenge, rpID, userID := readOptions(a.t, options)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		a.t.Fatal(err)
	}
	c := &softCred{id: make([]byte, 16), key: key, rpID: rpID, userHandle: userID, count: 1}
	rand.Read(c.id)
	pub, _ := key.PublicKey.ECDH()
	point := pub.Bytes() // 0x04 || x || y
	cose, err := webauthncbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: point[1:33], -3: point[33:]})
	if err != nil {
		a.t.Fatal(err)
	}
	rpHash := sha256.Sum256([]byte(rpID))
	auth := append([]byte{}, rpHash[:]...)
	auth = append(auth, FlagUP|FlagUV|FlagBE|FlagBS|FlagAT)
	auth = binary.BigEndian.AppendUint32(auth, c.count)
	auth = append(auth, make([]byte, 16)...) // AAGUID
	auth = binary.BigEndian.AppendUint16(auth, uint16(len(c.id)))
	auth = append(auth, c.id...)
	auth = append(auth, cose...)
	att, err := webauthncbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": auth})
	if err != nil {
		a.t.Fatal(err)
	}
	credID = b64u.EncodeToString(c.id)
	a.mu.Lock()
	a.creds[credID] = c
	a.mu.Unlock()
	resp, _ = json.Marshal(map[string]any{
		"id": credID, "rawId": credID, "type": "public-key", "authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64u.EncodeToString(a.clientData("webauthn.create", challenge)),
			"attestationObject": b64u.EncodeToString(att),
			"transports":        []string{"internal"},
		},
		"clientExtensionResults": map[string]any{},
	})
	return resp, credID
}

// Get answers navigator.credentials.get(options) with the credential
// credID, advancing its counter by step (0: a counter that stays).
func (a *Authenticator) Get(options []byte, credID string, step uint32) []byte {
	a.t.Helper()
	challenge, _, _ := readOptions(a.t, options)
	a.mu.Lock()
	c := a.creds[credID]
	c.count += step
	count := c.count
	a.mu.Unlock()
	rpHash := sha256.Sum256([]byte(c.rpID))
	auth := append([]byte{}, rpHash[:]...)
	auth = append(auth, FlagUP|FlagUV|FlagBE|FlagBS)
	auth = binary.BigEndian.AppendUint32(auth, count)
	cd := a.clientData("webauthn.get", challenge)
	cdHash := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, auth...), cdHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, c.key, digest[:])
	if err != nil {
		a.t.Fatal(err)
	}
	resp, _ := json.Marshal(map[string]any{
		"id": credID, "rawId": credID, "type": "public-key", "authenticatorAttachment": "platform",
		"response": map[string]any{
			"clientDataJSON":    b64u.EncodeToString(cd),
			"authenticatorData": b64u.EncodeToString(auth),
			"signature":         b64u.EncodeToString(sig),
			"userHandle":        b64u.EncodeToString(c.userHandle),
		},
		"clientExtensionResults": map[string]any{},
	})
	return resp
}

// SetCount sets the signature counter of credID (a cloned
// authenticator's, going backwards).
func (a *Authenticator) SetCount(credID string, n uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.creds[credID].count = n
}

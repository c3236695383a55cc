package accounts

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/guestauth/caddy-guestauth/internal/ctcmp"
)

// Password length bounds, in characters. The maximum keeps hashing cost and
// memory bounded whatever a client sends.
const (
	MinPasswordLength = 8
	MaxPasswordLength = 128
)

// Argon2Params are argon2id's cost parameters; they are stored in each hash
// (PHC string format), so raising them later only affects new hashes.
type Argon2Params struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultArgon2 is OWASP's minimum recommendation for argon2id
// (19 MiB, 2 passes, 1 lane).
var DefaultArgon2 = Argon2Params{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

const (
	saltLen = 16
	keyLen  = 32
)

// hashSlots bounds concurrent hashes: each costs tens of ms of CPU and
// MemoryKiB of RAM, so unbounded concurrency would be a memory DoS.
var hashSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

func checkPasswordLength(pw string) error {
	n := utf8.RuneCountInString(pw)
	if !utf8.ValidString(pw) || n < MinPasswordLength || n > MaxPasswordLength {
		return fmt.Errorf("a password must be %d to %d characters", MinPasswordLength, MaxPasswordLength)
	}
	return nil
}

// HashPassword returns an argon2id PHC string.
func HashPassword(pw string, p Argon2Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	hashSlots <- struct{}{}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, keyLen)
	<-hashSlots
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

var errBadHash = errors.New("unrecognized password hash")

// VerifyPassword checks pw against a PHC string from HashPassword.
func VerifyPassword(pw, phc string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return false, errBadHash
	}
	var p Argon2Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil {
		return false, errBadHash
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || p.MemoryKiB > 1<<20 || p.Time > 16 || p.Threads == 0 {
		return false, errBadHash
	}
	hashSlots <- struct{}{}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	<-hashSlots
	return ctcmp.Equal(got, want), nil
}

// dummyHash is verified against when there is no real hash to check (no such
// user, or a guest), so failures take as long as a wrong password does.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword("guest-auth-dummy-password", DefaultArgon2)
	if err != nil {
		panic(err)
	}
	return h
})

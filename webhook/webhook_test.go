package webhook_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/webhook"
)

// The test vector published with the Standard Webhooks libraries (and
// Svix's documentation): signing it the same is what lets the spec's
// libraries in every language verify our deliveries.
const (
	vectorSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTS     = 1614265330
	vectorBody   = `{"test": 2432232314}`
	vectorSig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignReferenceVector(t *testing.T) {
	got, err := webhook.Sign(vectorSecret, vectorID, time.Unix(vectorTS, 0), []byte(vectorBody))
	if err != nil || got != vectorSig {
		t.Fatalf("Sign = %q, %v; want %q", got, err, vectorSig)
	}
	h := http.Header{}
	h.Set("Webhook-Id", vectorID)
	h.Set("Webhook-Timestamp", strconv.Itoa(vectorTS))
	h.Set("Webhook-Signature", vectorSig)
	if err := webhook.Verify(vectorSecret, h, []byte(vectorBody), time.Unix(vectorTS+10, 0)); err != nil {
		t.Fatalf("Verify of the reference vector: %v", err)
	}
}

func TestParseSecret(t *testing.T) {
	raw := []byte{0xfb, 0xff, 0xbf, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15}
	for _, tc := range []struct {
		name, secret string
		want         []byte // nil: an error
	}{
		{"whsec, padded", "whsec_" + base64.StdEncoding.EncodeToString(raw), raw},
		{"whsec, unpadded", "whsec_" + base64.RawStdEncoding.EncodeToString(raw), raw},
		{"whsec, the reference secret", vectorSecret, mustStd(t, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")},
		// Plain secrets are never decoded, even when they would decode:
		// the key is the bytes as written.
		{"plain", "hook-secret", []byte("hook-secret")},
		{"plain that is valid base64", "abcdabcd", []byte("abcdabcd")},
		{"plain base64 without the prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", []byte("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")},
		{"plain, non-ASCII", "sécret-ü", []byte("sécret-ü")},
		{"plain, other case of the prefix", "WHSEC_abc", []byte("WHSEC_abc")},
		{"empty", "", nil},
		{"prefix only", "whsec_", nil},
		{"whsec, base64url alphabet", "whsec_" + base64.URLEncoding.EncodeToString(raw), nil},
		{"whsec, not base64", "whsec_not base64!", nil},
		{"whsec, bad padding", "whsec_abcde=", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := webhook.ParseSecret(tc.secret)
			if tc.want == nil {
				if err == nil {
					t.Fatalf("ParseSecret(%q) = %x, want an error", tc.secret, []byte(k))
				}
				if tail := strings.TrimPrefix(tc.secret, "whsec_"); len(tail) > 3 && strings.Contains(err.Error(), tail) {
					t.Fatalf("the error shows the secret: %v", err)
				}
				return
			}
			if err != nil || string(k) != string(tc.want) {
				t.Fatalf("ParseSecret(%q) = %x, %v; want %x", tc.secret, []byte(k), err, tc.want)
			}
		})
	}
}

func TestKeyNotPrinted(t *testing.T) {
	k := webhook.Key("the-secret-key")
	for _, f := range []string{"%v", "%s", "%+v", "%#v", "%q", "%x"} {
		out := fmt.Sprintf(f, k)
		if strings.Contains(out, "the-secret-key") || strings.Contains(out, fmt.Sprintf("%x", "the-secret-key")) {
			t.Errorf("%s prints the key: %s", f, out)
		}
	}
	if out := fmt.Sprintf("%v", struct{ K webhook.Key }{k}); strings.Contains(out, "the-secret-key") {
		t.Errorf("a struct holding the key prints it: %s", out)
	}
}

func TestVerify(t *testing.T) {
	const secret = "whsec_c2VjcmV0LWtleS1vZi1hdC1sZWFzdC0yNC1ieXRlcw=="
	const plain = "a plain secret"
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	body := []byte(`{"id":"0194276c-1c8e-7d43-a3a3-0d6a0b6e0d8b","type":"guest.upgraded","data":{"new_name":"alice"}}`)
	id := "0194276c-1c8e-7d43-a3a3-0d6a0b6e0d8b"
	sign := func(secret, id string, ts time.Time, body []byte) string {
		s, err := webhook.Sign(secret, id, ts, body)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := sign(secret, id, at, body)
	hdr := func(id, ts, sig string) http.Header {
		h := http.Header{}
		for k, v := range map[string]string{webhook.HeaderID: id, webhook.HeaderTimestamp: ts, webhook.HeaderSignature: sig} {
			if v != "" {
				h.Set(k, v)
			}
		}
		return h
	}
	unix := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	other := sign("whsec_b3RoZXItc2VjcmV0LW9mLWF0LWxlYXN0LTI0LWJ5dGVz", id, at, body)
	for _, tc := range []struct {
		name   string
		secret string
		header http.Header
		body   []byte
		now    time.Time
		opts   []webhook.Option
		want   error
	}{
		{"genuine", secret, hdr(id, unix(at), good), body, at, nil, nil},
		{"genuine, 5 minutes later", secret, hdr(id, unix(at), good), body, at.Add(5 * time.Minute), nil, nil},
		{"genuine, 5 minutes early", secret, hdr(id, unix(at), good), body, at.Add(-5 * time.Minute), nil, nil},
		{"tampered body", secret, hdr(id, unix(at), good), []byte(strings.Replace(string(body), "alice", "mallory", 1)), at, nil, webhook.ErrBadSignature},
		{"body with a trailing newline", secret, hdr(id, unix(at), good), append(body, '\n'), at, nil, webhook.ErrBadSignature},
		{"replayed under another id", secret, hdr("0194276c-1c8e-7d43-a3a3-0d6a0b6e0d8c", unix(at), good), body, at, nil, webhook.ErrBadSignature},
		{"timestamp moved", secret, hdr(id, unix(at.Add(time.Second)), good), body, at, nil, webhook.ErrBadSignature},
		{"replayed 5m01s later", secret, hdr(id, unix(at), good), body, at.Add(5*time.Minute + time.Second), nil, webhook.ErrStale},
		{"signed 5m01s ahead", secret, hdr(id, unix(at), good), body, at.Add(-5*time.Minute - time.Second), nil, webhook.ErrStale},
		{"an hour old, tolerance 2h", secret, hdr(id, unix(at), good), body, at.Add(time.Hour), []webhook.Option{webhook.WithTolerance(2 * time.Hour)}, nil},
		{"a minute old, tolerance 30s", secret, hdr(id, unix(at), good), body, at.Add(time.Minute), []webhook.Option{webhook.WithTolerance(30 * time.Second)}, webhook.ErrStale},
		{"non-positive tolerance is the default", secret, hdr(id, unix(at), good), body, at.Add(6 * time.Minute), []webhook.Option{webhook.WithTolerance(0)}, webhook.ErrStale},
		{"forged and old: bad signature first", secret, hdr(id, unix(at), other), body, at.Add(time.Hour), nil, webhook.ErrBadSignature},
		{"wrong secret", "whsec_b3RoZXItc2VjcmV0LW9mLWF0LWxlYXN0LTI0LWJ5dGVz", hdr(id, unix(at), good), body, at, nil, webhook.ErrBadSignature},
		{"secret without its prefix is a plain secret", strings.TrimPrefix(secret, "whsec_"), hdr(id, unix(at), good), body, at, nil, webhook.ErrBadSignature},
		{"plain secret", plain, hdr(id, unix(at), sign(plain, id, at, body)), body, at, nil, nil},
		{"whsec_ of a plain secret's bytes is the same key", "whsec_" + base64.StdEncoding.EncodeToString([]byte(plain)), hdr(id, unix(at), sign(plain, id, at, body)), body, at, nil, nil},
		{"plain secret, signed with another", plain, hdr(id, unix(at), good), body, at, nil, webhook.ErrBadSignature},
		{"secret that does not parse", "whsec_!", hdr(id, unix(at), good), body, at, nil, webhook.ErrBadSignature},
		{"several signatures, ours last", secret, hdr(id, unix(at), other+" "+good), body, at, nil, nil},
		{"several signatures, ours first", secret, hdr(id, unix(at), good+" "+other), body, at, nil, nil},
		{"other versions and junk ignored", secret, hdr(id, unix(at), "v1a,AAAA v2,"+good[3:]+" junk v1,!!! "+good), body, at, nil, nil},
		{"only other versions", secret, hdr(id, unix(at), "v1a,"+good[3:]+" v2,"+good[3:]), body, at, nil, webhook.ErrBadSignature},
		{"several signatures, none ours", secret, hdr(id, unix(at), other+" "+other), body, at, nil, webhook.ErrBadSignature},
		{"v1= instead of v1,", secret, hdr(id, unix(at), "v1="+good[3:]), body, at, nil, webhook.ErrBadSignature},
		{"no version", secret, hdr(id, unix(at), good[3:]), body, at, nil, webhook.ErrBadSignature},
		{"hex instead of base64", secret, hdr(id, unix(at), "v1,"+fmt.Sprintf("%x", mustStd(t, good[3:]))), body, at, nil, webhook.ErrBadSignature},
		{"truncated", secret, hdr(id, unix(at), good[:len(good)-4]), body, at, nil, webhook.ErrBadSignature},
		{"no id", secret, hdr("", unix(at), good), body, at, nil, webhook.ErrBadSignature},
		{"no timestamp", secret, hdr(id, "", good), body, at, nil, webhook.ErrBadSignature},
		{"no signature", secret, hdr(id, unix(at), ""), body, at, nil, webhook.ErrBadSignature},
		{"no headers", secret, http.Header{}, body, at, nil, webhook.ErrBadSignature},
		{"timestamp not a number", secret, hdr(id, "soon", good), body, at, nil, webhook.ErrBadSignature},
		{"timestamp in milliseconds", secret, hdr(id, strconv.FormatInt(at.UnixMilli(), 10), sign(secret, id, time.Unix(at.UnixMilli(), 0), body)), body, at, nil, webhook.ErrStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := webhook.Verify(tc.secret, tc.header, tc.body, tc.now, tc.opts...)
			if (got == nil) != (tc.want == nil) || !errors.Is(got, tc.want) {
				t.Fatalf("Verify = %v, want %v", got, tc.want)
			}
			if got != nil && (errors.Is(got, webhook.ErrStale) == errors.Is(got, webhook.ErrBadSignature)) {
				t.Fatalf("Verify = %v: wraps both sentinels or neither", got)
			}
		})
	}
}

// An empty key verifies nothing, whatever the headers say.
func TestEmptyKeyVerifiesNothing(t *testing.T) {
	at := time.Unix(1735787045, 0)
	h := http.Header{}
	webhook.Key(nil).SetHeaders(h, "e1", at, []byte("{}"))
	if err := webhook.Key(nil).Verify(h, []byte("{}"), at); !errors.Is(err, webhook.ErrBadSignature) {
		t.Fatalf("Verify with an empty key = %v", err)
	}
}

// SetHeaders writes the three headers a sender must send; the header
// names are matched case-insensitively, as HTTP does.
func TestSetHeaders(t *testing.T) {
	k, err := webhook.ParseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	k.SetHeaders(h, vectorID, time.Unix(vectorTS, 0), []byte(vectorBody))
	want := map[string]string{"Webhook-Id": vectorID, "Webhook-Timestamp": strconv.Itoa(vectorTS), "Webhook-Signature": vectorSig}
	if len(h) != len(want) {
		t.Fatalf("headers %v", h)
	}
	for k, v := range want {
		if got := h.Get(strings.ToLower(k)); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if err := k.Verify(h, []byte(vectorBody), time.Unix(vectorTS, 0)); err != nil {
		t.Fatal(err)
	}
}

func mustStd(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package storagetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/guestauth/caddy-guestauth/internal/model"
	"github.com/guestauth/caddy-guestauth/storage"
)

func flowState(created time.Time, ttl time.Duration, data string) model.FlowState {
	return model.FlowState{CreatedAt: created, ExpiresAt: created.Add(ttl), Data: json.RawMessage(data)}
}

func mustPutFlow(t *testing.T, st storage.Backend, kind, handle string, f model.FlowState) {
	t.Helper()
	if err := st.PutFlowState(bg, kind, handle, f); err != nil {
		t.Fatalf("PutFlowState %s/%s: %v", kind, handle, err)
	}
}

// A flow state is taken once; a second take gets the record marked spent
// (ErrSpent) until it expires, then ErrNotFound like a handle never
// stored. Reads never take it.
func testFlowStateTakenOnce(t *testing.T, st storage.Backend) {
	mustPutFlow(t, st, "code", "h1", flowState(T0, time.Minute, `{"client":"app","n":1}`))
	for range 2 {
		f, err := st.GetFlowState(bg, "code", "h1", T0.Add(time.Second))
		if err != nil || f.Kind != "code" || !f.SpentAt.IsZero() || !f.ExpiresAt.Equal(T0.Add(time.Minute)) {
			t.Fatalf("get before the take: %+v, %v", f, err)
		}
	}
	f, err := st.TakeFlowState(bg, "code", "h1", T0.Add(2*time.Second))
	if err != nil || f.Kind != "code" || !f.CreatedAt.Equal(T0) {
		t.Fatalf("first take: %+v, %v", f, err)
	}
	var data struct {
		Client string `json:"client"`
		N      int    `json:"n"`
	}
	if err := json.Unmarshal(f.Data, &data); err != nil || data.Client != "app" || data.N != 1 {
		t.Fatalf("data after the take: %s (%v)", f.Data, err)
	}
	for _, at := range []time.Duration{3 * time.Second, 59 * time.Second} {
		again, err := st.TakeFlowState(bg, "code", "h1", T0.Add(at))
		if !errors.Is(err, model.ErrSpent) || again == nil || !again.SpentAt.Equal(T0.Add(2*time.Second)) || !bytes.Contains(again.Data, []byte(`"app"`)) {
			t.Fatalf("take again at +%s: %+v, %v; want the record spent at +2s with ErrSpent", at, again, err)
		}
		got, err := st.GetFlowState(bg, "code", "h1", T0.Add(at))
		if !errors.Is(err, model.ErrSpent) || got == nil || !got.SpentAt.Equal(T0.Add(2*time.Second)) {
			t.Fatalf("get of a spent record: %+v, %v", got, err)
		}
	}
	for _, call := range []func() (*model.FlowState, error){
		func() (*model.FlowState, error) { return st.TakeFlowState(bg, "code", "h1", T0.Add(time.Minute)) },
		func() (*model.FlowState, error) { return st.GetFlowState(bg, "code", "h1", T0.Add(time.Minute)) },
		func() (*model.FlowState, error) { return st.TakeFlowState(bg, "code", "never-stored", T0) },
		func() (*model.FlowState, error) { return st.GetFlowState(bg, "code", "never-stored", T0) },
	} {
		if f, err := call(); !errors.Is(err, model.ErrNotFound) || f != nil {
			t.Fatalf("expired or unknown: %+v, %v; want ErrNotFound", f, err)
		}
	}
	// An expired record that was never taken is gone as well.
	mustPutFlow(t, st, "code", "h2", flowState(T0, time.Minute, `{}`))
	if _, err := st.TakeFlowState(bg, "code", "h2", T0.Add(time.Minute)); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("take at expiry: %v, want ErrNotFound", err)
	}
}

// A handle of one kind never finds a record of another, and a stored
// handle cannot be stored again.
func testFlowStateKinds(t *testing.T, st storage.Backend) {
	mustPutFlow(t, st, "code", "same", flowState(T0, time.Minute, `{"k":"code"}`))
	mustPutFlow(t, st, "authorize", "same", flowState(T0, time.Minute, `{"k":"authorize"}`))
	if err := st.PutFlowState(bg, "code", "same", flowState(T0, time.Hour, `{}`)); !errors.Is(err, model.ErrExists) {
		t.Fatalf("put of a stored handle: %v, want ErrExists", err)
	}
	if _, err := st.TakeFlowState(bg, "other", "same", T0); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("take as another kind: %v, want ErrNotFound", err)
	}
	f, err := st.TakeFlowState(bg, "authorize", "same", T0)
	if err != nil || f.Kind != "authorize" || !bytes.Contains(f.Data, []byte(`"authorize"`)) {
		t.Fatalf("take of kind authorize: %+v, %v", f, err)
	}
	if f, err := st.TakeFlowState(bg, "code", "same", T0); err != nil || !bytes.Contains(f.Data, []byte(`"code"`)) {
		t.Fatalf("the other kind's record was spent with it: %+v, %v", f, err)
	}
	for _, bad := range []struct {
		kind, handle string
		f            model.FlowState
	}{
		{"", "h", flowState(T0, time.Minute, `{}`)},
		{"code", "", flowState(T0, time.Minute, `{}`)},
		{"code", "h", model.FlowState{CreatedAt: T0, Data: json.RawMessage(`{}`)}},
		{"code", "h", model.FlowState{ExpiresAt: T0, Data: json.RawMessage(`{}`)}},
	} {
		if err := st.PutFlowState(bg, bad.kind, bad.handle, bad.f); err == nil {
			t.Fatalf("put of %+v was accepted", bad)
		}
	}
}

// Of concurrent takes of one record exactly one gets it; every other one
// sees it spent.
func testFlowStateConcurrentTake(t *testing.T, st storage.Backend) {
	const handles, takers = 4, 12
	for i := range handles {
		mustPutFlow(t, st, "code", string(rune('a'+i)), flowState(T0, time.Minute, `{}`))
	}
	for i := range handles {
		var wg sync.WaitGroup
		var mu sync.Mutex
		won, spent := 0, 0
		for range takers {
			wg.Go(func() {
				_, err := st.TakeFlowState(bg, "code", string(rune('a'+i)), T0.Add(time.Second))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, model.ErrSpent):
					spent++
				default:
					t.Errorf("take: %v", err)
				}
			})
		}
		wg.Wait()
		if won != 1 || spent != takers-1 {
			t.Fatalf("handle %d: %d takes won and %d saw it spent; want 1 and %d", i, won, spent, takers-1)
		}
	}
}

// A key stored without a certificate gets one, once.
func testSigningKeyCert(t *testing.T, st storage.Backend) {
	k := model.SigningKey{KID: "k1", Alg: "ES256", CreatedAt: T0, JWK: []byte(`{"kty":"EC"}`)}
	if err := st.AddSigningKey(bg, k); err != nil {
		t.Fatal(err)
	}
	with := model.SigningKey{KID: "k2", Alg: "ES256", CreatedAt: T0.Add(time.Second), JWK: []byte(`{"kty":"EC"}`), Cert: []byte{0x30, 1, 2}}
	if err := st.AddSigningKey(bg, with); err != nil {
		t.Fatal(err)
	}
	if err := st.SetSigningKeyCert(bg, "k1", []byte{0x30, 0x82, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := st.SetSigningKeyCert(bg, "k1", []byte{0x30, 9}); !errors.Is(err, model.ErrExists) {
		t.Fatalf("second certificate: %v, want ErrExists", err)
	}
	if err := st.SetSigningKeyCert(bg, "k2", []byte{0x30, 9}); !errors.Is(err, model.ErrExists) {
		t.Fatalf("certificate of a key stored with one: %v, want ErrExists", err)
	}
	if err := st.SetSigningKeyCert(bg, "nope", []byte{0x30}); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("certificate of an unknown key: %v, want ErrNotFound", err)
	}
	keys, err := st.SigningKeys(bg)
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys: %+v, %v", keys, err)
	}
	if !bytes.Equal(keys[0].Cert, []byte{0x30, 0x82, 0xff}) || !bytes.Equal(keys[1].Cert, []byte{0x30, 1, 2}) ||
		string(keys[0].JWK) != `{"kty":"EC"}` || !keys[0].CreatedAt.Equal(T0) || keys[0].Alg != "ES256" {
		t.Fatalf("keys after the certificates: %+v", keys)
	}
}

// A redemption takes the record and stores its session in one
// transaction: both or neither.
func testFlowStateRedeem(t *testing.T, st storage.Backend) {
	mustCreate(t, st, NewUser("u1", "ann"), NewSession("s0", "u1"), nil)
	mustPutFlow(t, st, "code", "r1", flowState(T0, time.Minute, `{"session":"s1"}`))
	calls := 0
	start := func(id string) func(f *model.FlowState) (*model.Session, error) {
		return func(f *model.FlowState) (*model.Session, error) {
			calls++
			if f.Kind != "code" || !f.SpentAt.IsZero() || !bytes.Contains(f.Data, []byte(id)) {
				t.Errorf("start got %+v", f)
			}
			return NewSession(id, "u1"), nil
		}
	}
	// start refuses: nothing written.
	refused := errors.New("refused")
	if _, _, err := st.RedeemFlowState(bg, "code", "r1", T0.Add(time.Second), 0, func(*model.FlowState) (*model.Session, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Fatalf("start's error: %v", err)
	}
	if f, err := st.GetFlowState(bg, "code", "r1", T0.Add(time.Second)); err != nil || !f.SpentAt.IsZero() {
		t.Fatalf("after a refused start: %+v, %v; want it unspent", f, err)
	}
	// A user that does not exist: ErrNotFound, nothing written.
	orphan := func(*model.FlowState) (*model.Session, error) { return NewSession("s9", "nobody"), nil }
	if _, _, err := st.RedeemFlowState(bg, "code", "r1", T0.Add(time.Second), 0, orphan); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("session of an unknown user: %v", err)
	}
	if f, err := st.GetFlowState(bg, "code", "r1", T0.Add(time.Second)); err != nil || !f.SpentAt.IsZero() {
		t.Fatalf("after an unknown user: %+v, %v; want it unspent", f, err)
	}
	// The redemption: spent, the session stored, the cap applied.
	f, ended, err := st.RedeemFlowState(bg, "code", "r1", T0.Add(2*time.Second), 1, start("s1"))
	if err != nil || !f.SpentAt.Equal(T0.Add(2*time.Second)) || ended != 1 {
		t.Fatalf("redeem: %+v, %d, %v", f, ended, err)
	}
	mustIdentity(t, st, "u1", "s1")
	if _, err := st.GetSession(bg, "s0"); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("the session beyond keep is still there: %v", err)
	}
	// Spent: as a take answers, start not called.
	before := calls
	again, _, err := st.RedeemFlowState(bg, "code", "r1", T0.Add(3*time.Second), 0, start("s2"))
	if !errors.Is(err, model.ErrSpent) || again == nil || !bytes.Contains(again.Data, []byte("s1")) || calls != before {
		t.Fatalf("redeem of a spent record: %+v, %v (start called %d times)", again, err, calls-before)
	}
	if _, err := st.TakeFlowState(bg, "code", "r1", T0.Add(3*time.Second)); !errors.Is(err, model.ErrSpent) {
		t.Fatalf("take after the redemption: %v", err)
	}
	if _, _, err := st.RedeemFlowState(bg, "code", "never", T0, 0, start("s3")); !errors.Is(err, model.ErrNotFound) || calls != before {
		t.Fatalf("redeem of an unknown handle: %v", err)
	}
	if _, _, err := st.RedeemFlowState(bg, "code", "r1", T0.Add(time.Minute), 0, start("s3")); !errors.Is(err, model.ErrNotFound) {
		t.Fatalf("redeem after expiry: %v", err)
	}
	// Concurrent redemptions: one session.
	mustPutFlow(t, st, "code", "r2", flowState(T0, time.Minute, `{"session":"c"}`))
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range 8 {
		wg.Go(func() {
			_, _, err := st.RedeemFlowState(bg, "code", "r2", T0.Add(time.Second), 0, func(*model.FlowState) (*model.Session, error) {
				return NewSession("c"+string(rune('0'+i)), "u1"), nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, model.ErrSpent):
				t.Errorf("concurrent redeem: %v", err)
			}
		})
	}
	wg.Wait()
	n := 0
	for i := range 8 {
		if _, err := st.GetSession(bg, "c"+string(rune('0'+i))); err == nil {
			n++
		}
	}
	if won != 1 || n != 1 {
		t.Fatalf("%d redemptions won, %d sessions stored; want 1 and 1", won, n)
	}
}

package tokens

import (
	"bytes"
	"encoding/asn1"
	"math/big"
	"math/rand/v2"
	"testing"
)

// derSignature writes what encoding/asn1 writes for the two integers,
// whatever their leading zeros and high bits.
func TestDERSignatureMatchesASN1(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	cases := [][]byte{make([]byte, 64), bytes.Repeat([]byte{0xff}, 64), append(make([]byte, 63), 1)}
	for range 2000 {
		rs := make([]byte, 64)
		for i := range rs {
			rs[i] = byte(rng.UintN(256))
		}
		switch rng.UintN(4) { // leading zeros and high bits on either half
		case 0:
			rs[0], rs[1] = 0, byte(rng.UintN(256))
		case 1:
			rs[32], rs[33], rs[34] = 0, 0, 0x80
		case 2:
			rs[0] |= 0x80
			rs[32] |= 0x80
		}
		cases = append(cases, rs)
	}
	for _, rs := range cases {
		want, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:32]), new(big.Int).SetBytes(rs[32:])})
		if err != nil {
			t.Fatal(err)
		}
		if got := derSignature(nil, rs); !bytes.Equal(got, want) {
			t.Fatalf("%x:\n got %x\n want %x", rs, got, want)
		}
	}
}

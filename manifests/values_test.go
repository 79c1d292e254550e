package manifests

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestQuantity(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		q            Quantity
		milli, value int64
		bad          bool
	}{
		{q: "50m", milli: 50, value: 1},
		{q: "1500m", milli: 1500, value: 2},
		{q: "2", milli: 2000, value: 2},
		{q: "0", milli: 0, value: 0},
		{q: "0.5", milli: 500, value: 1},
		{q: "128Mi", milli: 128 << 20 * 1000, value: 128 << 20},
		{q: "1Gi", milli: 1 << 30 * 1000, value: 1 << 30},
		{q: "1.5Gi", milli: 3 << 29 * 1000, value: 3 << 29},
		{q: "1G", milli: 1e12, value: 1e9},
		{q: "1e3", milli: 1e6, value: 1000},
		{q: "100n", milli: 1, value: 1},
		{q: " 64Ki ", milli: 64 << 10 * 1000, value: 64 << 10},
		{q: "8Ei", milli: math.MaxInt64, value: math.MaxInt64},
		{q: "9223372036854775807", milli: math.MaxInt64, value: math.MaxInt64},
		{q: "", bad: true},
		{q: "12Q", bad: true},
		{q: "-1", bad: true},
		{q: "Mi", bad: true},
	} {
		m, errM := c.q.Milli()
		v, errV := c.q.Value()
		if c.bad {
			if errM == nil || errV == nil {
				t.Errorf("%q: Milli %d, %v; Value %d, %v; want errors", c.q, m, errM, v, errV)
			}
			continue
		}
		if errM != nil || errV != nil || m != c.milli || v != c.value {
			t.Errorf("%q: Milli %d, %v; Value %d, %v; want %d and %d", c.q, m, errM, v, errV, c.milli, c.value)
		}
	}
}

// TestQuantityFastPathAgreesWithRat checks wholeMillis, which reads the
// common forms without big.Rat, against the Rat path on random
// quantities, near the int64 limits too.
func TestQuantityFastPathAgreesWithRat(t *testing.T) {
	t.Parallel()
	slow := func(q Quantity) (milli, value int64, err error) {
		r, err := q.Rat()
		if err != nil {
			return 0, 0, err
		}
		value = ceilRat(r)
		r.Mul(r, ratThousand)
		return ceilRat(r), value, nil
	}
	suffixes := []string{"", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "x", "mi"}
	rng := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for range 200_000 {
		var b strings.Builder
		for range 1 + rng.IntN(20) {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		if rng.IntN(10) == 0 {
			s := b.String()
			b.Reset()
			at := rng.IntN(len(s) + 1)
			b.WriteString(s[:at] + "." + s[at:])
		}
		q := Quantity(b.String() + suffixes[rng.IntN(len(suffixes))])
		wantM, wantV, wantErr := slow(q)
		m, errM := q.Milli()
		v, errV := q.Value()
		if (errM != nil) != (wantErr != nil) || (errV != nil) != (wantErr != nil) || m != wantM || v != wantV {
			t.Fatalf("%q: Milli %d, %v; Value %d, %v; Rat gives %d, %d, %v", q, m, errM, v, errV, wantM, wantV, wantErr)
		}
		if _, ok := wholeMillis(string(q)); ok {
			fast++
		}
	}
	if fast < 50_000 {
		t.Fatalf("only %d of the quantities took the fast path: the check compares little", fast)
	}
}

package manifests

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// IntOrString holds an integer or a string such as "25%".
type IntOrString struct {
	IsString bool
	IntVal   int32
	StrVal   string
}

// FromInt returns an IntOrString holding n.
func FromInt(n int32) *IntOrString { return &IntOrString{IntVal: n} }

// FromString returns an IntOrString holding s.
func FromString(s string) *IntOrString { return &IntOrString{IsString: true, StrVal: s} }

// MarshalJSON writes a number or a string.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsString {
		return json.Marshal(v.StrVal)
	}
	return json.Marshal(v.IntVal)
}

// UnmarshalJSON reads a number or a string.
func (v *IntOrString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		v.IsString = true
		return json.Unmarshal(b, &v.StrVal)
	}
	v.IsString = false
	return json.Unmarshal(b, &v.IntVal)
}

// Scaled resolves v against total: a percentage is taken of total, rounded
// up when roundUp is set and down otherwise; an integer is returned as is.
func (v *IntOrString) Scaled(total int32, roundUp bool) (int32, error) {
	if v == nil {
		return 0, nil
	}
	if !v.IsString {
		return v.IntVal, nil
	}
	p, ok := strings.CutSuffix(v.StrVal, "%")
	if !ok {
		return 0, fmt.Errorf("invalid value %q: want an integer or a percentage", v.StrVal)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return 0, fmt.Errorf("invalid percentage %q", v.StrVal)
	}
	f := float64(n) * float64(total) / 100
	if roundUp {
		return int32(math.Ceil(f)), nil
	}
	return int32(math.Floor(f)), nil
}

// Quantity is a resource amount written as in Kubernetes: "100m", "0.5",
// "2", "128Mi", "1G", "1e3". It is kept as the string the user wrote.
type Quantity string

var quantitySuffixes = map[string]*big.Rat{
	"n": big.NewRat(1, 1_000_000_000), "u": big.NewRat(1, 1_000_000), "m": big.NewRat(1, 1000),
	"": big.NewRat(1, 1), "k": big.NewRat(1000, 1), "M": big.NewRat(1_000_000, 1),
	"G": big.NewRat(1_000_000_000, 1), "T": big.NewRat(1_000_000_000_000, 1),
	"P":  new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(15), nil)),
	"E":  new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(18), nil)),
	"Ki": big.NewRat(1<<10, 1), "Mi": big.NewRat(1<<20, 1), "Gi": big.NewRat(1<<30, 1),
	"Ti": big.NewRat(1<<40, 1), "Pi": big.NewRat(1<<50, 1), "Ei": new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), 60)),
}

var ratThousand = big.NewRat(1000, 1)

// Rat parses the quantity as an exact rational number.
func (q Quantity) Rat() (*big.Rat, error) {
	s := strings.TrimSpace(string(q))
	if s == "" {
		return nil, fmt.Errorf("empty quantity")
	}
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') && s[i-1] != '.' {
		i--
	}
	num, suffix := s[:i], s[i:]
	mult, ok := quantitySuffixes[suffix]
	if !ok && strings.ContainsAny(suffix, "eE") && len(suffix) > 1 {
		// Not a suffix ("Ei" is one): an exponent, read as a number.
		num, mult, ok = s, quantitySuffixes[""], true
	}
	if !ok {
		return nil, fmt.Errorf("quantity %q: unknown suffix %q", s, suffix)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok || r.Sign() < 0 {
		return nil, fmt.Errorf("quantity %q: not a non-negative number", s)
	}
	return r.Mul(r, mult), nil
}

// wholeMilli is how many thousandths one unit of a suffix is, for the
// suffixes wholeMillis reads.
var wholeMilli = map[string]int64{
	"m": 1, "": 1000, "k": 1000_000, "M": 1000_000_000, "G": 1000_000_000_000, "T": 1000_000_000_000_000,
	"Ki": 1000 << 10, "Mi": 1000 << 20, "Gi": 1000 << 30, "Ti": 1000 << 40,
}

// wholeMillis reads the quantities most manifests hold, a whole number
// and a suffix of wholeMilli ("50m", "2", "128Mi"), in thousandths
// without big.Rat, which is costly on the scheduler's path: it reads
// every pod's requests as it comes (docs/BENCHMARKS.md). ok is false for
// anything else and when the thousandths overflow; Rat reads those.
func wholeMillis(s string) (int64, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || i > 18 { // 18 digits fit an int64
		return 0, false
	}
	mult, ok := wholeMilli[s[i:]]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, false
	}
	return n * mult, true
}

// Milli returns the quantity in thousandths, rounded up: CPU in millicores.
func (q Quantity) Milli() (int64, error) {
	if m, ok := wholeMillis(string(q)); ok {
		return m, nil
	}
	r, err := q.Rat()
	if err != nil {
		return 0, err
	}
	r.Mul(r, ratThousand)
	return ceilRat(r), nil
}

// Value returns the quantity as a whole number, rounded up: memory in bytes.
func (q Quantity) Value() (int64, error) {
	if m, ok := wholeMillis(string(q)); ok {
		v := m / 1000
		if m%1000 != 0 {
			v++ // rounded up, as ceilRat
		}
		return v, nil
	}
	r, err := q.Rat()
	if err != nil {
		return 0, err
	}
	return ceilRat(r), nil
}

func ceilRat(r *big.Rat) int64 {
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if new(big.Rat).SetInt(n).Cmp(r) < 0 {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return math.MaxInt64
	}
	return n.Int64()
}

// MilliCPU returns the list's "cpu" in millicores, zero when absent or invalid.
func (l ResourceList) MilliCPU() int64 {
	q, ok := l["cpu"]
	if !ok {
		return 0
	}
	v, _ := q.Milli()
	return v
}

// MemoryBytes returns the list's "memory" in bytes, zero when absent or invalid.
func (l ResourceList) MemoryBytes() int64 {
	q, ok := l["memory"]
	if !ok {
		return 0
	}
	v, _ := q.Value()
	return v
}

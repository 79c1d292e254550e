package ownership

import (
	"fmt"

	"github.com/capstan-io/capstan/manifests"
)

// Drift modes.
const (
	DriftCorrect = "correct"
	DriftReport  = "report"
)

// Comparison is a declared object against the live one, as the sync
// compares them: Want is what an apply writes (the declared object with
// the fields owned by others and the ignored ones taken from live), the
// views are what Git owns of each, as JSON.
type Comparison struct {
	Want               manifests.Object
	WantView, LiveView []byte
}

// Changed reports whether an apply would write.
func (c Comparison) Changed() bool { return string(c.WantView) != string(c.LiveView) }

// Fields lists the fields an apply would change.
func (c Comparison) Fields() []string { return ChangedFields(c.LiveView, c.WantView) }

// Compare compares declared with live (nil: absent) under a source's drift
// policy (nil: ignore nothing). The caller sets the source annotation on
// declared.
func Compare(declared, live manifests.Object, policy *manifests.DriftPolicy) (Comparison, error) {
	want := declared
	if live != nil {
		for _, o := range Owners {
			if got, ok := o.Take(want, live); ok {
				want = got
			}
		}
		got, ok, err := withIgnored(policy, want, live)
		if err != nil {
			return Comparison{}, fmt.Errorf("apply drift ignore rules to %s: %w", manifests.KeyOf(declared), err)
		}
		if ok {
			want = got
		}
	}
	c := Comparison{Want: want}
	var err error
	if c.WantView, err = DeclaredView(want); err != nil {
		return Comparison{}, err
	}
	if live != nil {
		if c.LiveView, err = DeclaredView(live); err != nil {
			return Comparison{}, err
		}
	}
	return c, nil
}

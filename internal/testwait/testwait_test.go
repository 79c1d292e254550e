package testwait

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	t.Parallel()
	calls := 0
	err := Until(10*time.Second, func() error {
		if calls++; calls < 3 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Until: %v after %d calls, want nil after 3", err, calls)
	}

	begin := time.Now()
	err = Until(3*Every, func() error { return errors.New("never") })
	if err == nil || err.Error() != "never" {
		t.Fatalf("Until of a condition that never holds: %v, want its last error", err)
	}
	if d := time.Since(begin); d < 3*Every {
		t.Fatalf("Until gave up after %s, before its %s", d, 3*Every)
	}
}

func TestHolds(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	calls := 0
	Holds(t, 2*HoldEvery, "a steady state", func() error { calls++; return nil })
	if d := time.Since(begin); d < 2*HoldEvery || calls < 3 {
		t.Fatalf("Holds returned after %s and %d looks, want at least %s and 3", d, calls, 2*HoldEvery)
	}
}

func TestSettles(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	calls := 0
	got := Settles(t, 10*time.Second, 4*Every, "a counter that stops at 3", func() int {
		calls++
		return min(calls, 3)
	})
	if got != 3 {
		t.Fatalf("Settles returned %d, want 3", got)
	}
	if d := time.Since(begin); d < 6*Every {
		t.Fatalf("Settles returned after %s, before two changes and a quiet %s", d, 4*Every)
	}
}

// Package testwait is the tests' one way to wait for an observable
// condition: poll it until it holds or a deadline passes, never sleep for
// something to happen. Holds is its counterpart for a condition that must
// not change during a deliberate window; Settles waits for a value to stop
// changing before such a window.
package testwait

import (
	"fmt"
	"testing"
	"time"
)

// Every is how often For and Until poll.
const Every = 50 * time.Millisecond

// HoldEvery is how often Holds looks: a state that must not change needs
// no quick look, and its checks are often costly (the CLI, podman).
const HoldEvery = 250 * time.Millisecond

// For calls fn every Every until it returns nil, and fails the test with
// fn's last error once total has passed.
func For(t testing.TB, total time.Duration, what string, fn func() error) {
	t.Helper()
	if err := Until(total, fn); err != nil {
		t.Fatalf("%s: not within %s: %v", what, total, err)
	}
}

// Until calls fn every Every until it returns nil, and returns fn's last
// error once total has passed: For for a caller that does not fail on a
// miss (a benchmark that logs a profile it could not fetch).
func Until(total time.Duration, fn func() error) error {
	deadline := time.Now().Add(total)
	tick := time.NewTicker(Every)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		<-tick.C
	}
}

// Holds calls fn every HoldEvery for d, and fails the test at its first error:
// a state that must not change (nothing restarted, nothing applied). The
// window is deliberate: it is how long the test says nothing happens.
func Holds(t testing.TB, d time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(HoldEvery)
	defer tick.Stop()
	for {
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			return
		}
		<-tick.C
	}
}

// Settles calls value every Every until it has returned the same for
// quiet, and returns it; it fails the test if value has not stood still
// that long once total has passed. It is the wait before a Holds window
// when what is still in flight has no end to observe (writes that a
// converged state leaves behind, a run scheduled just before a pause):
// the window then checks that nothing more comes.
func Settles[T comparable](t testing.TB, total, quiet time.Duration, what string, value func() T) T {
	t.Helper()
	var last T
	var since time.Time
	err := Until(total, func() error {
		v, now := value(), time.Now()
		if since.IsZero() || v != last {
			last, since = v, now
		}
		if d := now.Sub(since); d < quiet {
			return fmt.Errorf("at %v for only %s, want %s", v, d.Round(time.Millisecond), quiet)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: does not settle within %s: %v", what, total, err)
	}
	return last
}

// Package sourcetest holds test helpers shared by the source
// implementations: polling for an eventual condition with a deadline, and
// waiting for a change signal, so tests never sleep blindly.
package sourcetest

import (
	"testing"
	"time"
)

// Eventually polls cond every 10 ms until it returns true, and fails the
// test with msg if that has not happened within timeout.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, msg)
		}
		<-tick.C
	}
}

// WaitSignal waits up to timeout for a value on ch and fails the test with
// msg if none comes.
func WaitSignal(t testing.TB, ch <-chan struct{}, timeout time.Duration, msg string) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-ch:
	case <-timer.C:
		t.Fatalf("no signal within %v: %s", timeout, msg)
	}
}

// Drain empties ch without waiting.
func Drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

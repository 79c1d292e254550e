// Package sourcetest holds test helpers shared by the source
// implementations: polling for an eventual condition with a deadline, and
// waiting for a change signal, so tests never sleep blindly.
package sourcetest

import (
	"errors"
	"testing"
	"time"

	"github.com/capstan-io/capstan/internal/testwait"
)

// Eventually waits until cond returns true (testwait.For), and fails
// the test with msg if that has not happened within timeout.
func Eventually(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	testwait.For(t, timeout, msg, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
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

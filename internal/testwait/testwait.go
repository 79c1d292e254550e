// Package testwait is the tests' one way to wait for an observable
// condition: poll it until it holds or a deadline passes, never sleep for
// something to happen.
package testwait

import (
	"testing"
	"time"
)

// Every is how often For polls.
const Every = 50 * time.Millisecond

// For calls fn every Every until it returns nil, and fails the test with
// fn's last error once total has passed.
func For(t testing.TB, total time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	tick := time.NewTicker(Every)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, total, err)
		}
		<-tick.C
	}
}

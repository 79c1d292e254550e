// Package runtimetest is the contract every node.Runtime must meet, as a
// test suite that each implementation runs against itself:
//
//	func TestContract(t *testing.T) {
//		runtimetest.Run(t, func(t *testing.T) node.Runtime { return newRuntime(t) })
//	}
//
// The suite creates pods and containers from a busybox image (by default
// localhost/capstan-demo:latest, made by scripts/build-image.sh) and drives
// them with busybox shell commands, so any engine that runs that image can
// pass. Every pod it creates carries a label unique to the run, it lists
// only by that label, and it removes what it created when the test ends, so
// it never touches other pods on the same engine. Subtests run in parallel.
//
// The suite polls for eventual conditions with a deadline and never sleeps
// blindly.
package runtimetest

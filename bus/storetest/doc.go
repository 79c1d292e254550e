// Package storetest is the contract every bus.Store implementation must
// meet, as one test suite: call Run from a test in the implementation's
// package with a constructor that returns a fresh, empty store.
//
// It covers compare-and-set (Create, Update, Delete with a revision), List
// and Watch with NATS wildcard patterns, the OpSynced marker, the order of
// watched changes, keys whose last token has dots in it, and racing writers
// that must not lose an update. Closes is its check that a watch ends with
// its context, for an implementation's tests of its own watches.
package storetest

// Package memstore is an in-memory bus.Store, for tests and for running the
// control plane's logic without NATS.
//
// It has the semantics of the JetStream store in bus/natsbus: revisions come
// from one counter shared by all keys of a Store (like a stream sequence), so
// they only grow; Create, Update and Delete compare-and-set on the latest
// revision of the key, counting a deletion as a revision; List and Watch take
// NATS wildcard patterns ("*" one token, ">" the rest); a watch sends the
// current entries in revision order, then one OpSynced entry, then every
// change in order, and never drops one: each watcher has its own unbounded
// queue, so a slow reader slows no writer.
//
// Two differences from natsbus, neither of which a caller should rely on:
// deleting a key that does not exist writes nothing (natsbus writes a delete
// marker that watchers see), and nothing is ever compacted.
//
// The zero value is not usable; call New. A Store is safe for concurrent use.
// It persists nothing.
package memstore

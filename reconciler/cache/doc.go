// Package cache holds the objects bucket in memory for the controllers and
// the sync of one process: one watch, decoded once, indexed by owner and
// node, with handlers told of every change. It also holds the object
// helpers both sides write through (Create/Update/Delete/GetObject,
// Encode, Clone), so that a write the cache is told of is taken back
// without a second decode.
//
// It owns: the decoded objects and their indexes, string interning of
// pods, the write helpers. It does not own: what any controller or the
// sync decides. It may import bus and manifests only.
package cache

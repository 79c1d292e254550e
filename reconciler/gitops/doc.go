// Package gitops keeps the objects bucket equal to what Git declares.
// A Syncer follows one source: it fetches a revision, validates it whole
// (one bad file rejects it and the last good revision keeps running),
// applies it as a difference (ownership.Compare decides what is written),
// prunes what the source stopped declaring, and records every attempt in
// the audit stream. The SourceManager runs the root source and every
// Source declared in Git, with their credentials, signature policies,
// drift modes, health and notifications. The orphan sweep (an Addon of
// the control plane) deletes what no source declares and no controller
// owns.
//
// It owns: sync, inventory and prune, drift, health, signatures,
// history/audit, notifications. It does not own: derived objects (the
// controllers), field ownership (ownership). It may import bus,
// manifests, sources and reconciler/{cache,workqueue,events,ownership,
// controllers}; the controllers never import it.
package gitops

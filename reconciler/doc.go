// Package reconciler is the middle of Capstan: what turns a Git revision
// into pods on nodes. Its rooms:
//
//   - gitops: the sync of each source (fetch, validate, apply as a
//     difference, prune, drift, health, signatures, history and audit,
//     notifications), the source manager and the orphan sweep;
//   - ownership: what Git owns of an object and who owns the rest, and
//     the one comparison the sync, its drift report and `capstan diff`
//     share;
//   - controllers: the control plane's manager and its controllers
//     (workloads, services, endpoints, assignments, pod status, gc, node
//     lifecycle);
//   - scheduler: filter, score and bind;
//   - cache, workqueue, events: the plumbing both sides share in a
//     process: one objects cache, the work queue, the event recorder.
//
// This package itself holds no code: its tests run the rooms together on a
// real bus (the sync and the control plane from a commit to running pods).
// docs/ARCHITECTURE.md has the import rules; internal/archtest enforces
// them.
package reconciler

// Package ownership says which part of an object Git owns and who owns
// the rest, and compares what a source declares with what the bus holds.
// The sync's apply, its drift report and `capstan diff` all call Compare,
// so the diff predicts exactly what the sync writes (Update) and the
// drift report finds exactly what a correction would change.
//
// It owns: the declared view (no status, no server-set metadata), the
// field ownership table (Owners: an autoscaler's replicas, the service
// controller's allocations), a source's drift ignore rules and the drift
// policy handed to nodes. It does not own: writing anything. It may import
// manifests and reconciler/cache only.
package ownership

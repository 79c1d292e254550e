// Package scheduler binds pending pods to nodes: filter (Fit: resources,
// node selector and affinity, taints and tolerations, host ports), score
// (Score: least allocated, replicas spread), bind (an update of the pod's
// nodeName, written asynchronously while the next pod is decided).
// Nomad's scheduler/ and kube-scheduler's framework are the models. Its
// node accounting follows the cache's events and its own binds, so a
// decision never scans every pod; BenchmarkSchedulerChoose measures it.
//
// It owns: placement decisions and the node accounting behind them. It
// does not own: what runs on a node (the assignments controller hands
// bound pods to nodes). It may import bus, manifests, reconciler/cache and
// reconciler/workqueue; never the controllers or the sync.
package scheduler

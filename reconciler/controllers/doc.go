// Package controllers holds the control plane: the controllers that turn
// declared objects into running pods and keep their status, run by one
// manager (ControlPlane.Run) that starts them once the shared cache has
// synced, re-queues their keys periodically, and stops them as one when
// any part fails.
//
// It owns: the workload controllers (ReplicaSet, Deployment, StatefulSet,
// DaemonSet, Job, CronJob, ReplicationController, HorizontalPodAutoscaler),
// garbage collection, graceful deletion, node lifecycle, Services and
// their endpoints, the assignments that hand bound pods (with their
// ConfigMaps and Secrets, sealed) to nodes, the pod status mirror, and the
// pure planners behind them (plan.go). Other rooms add controllers to the
// manager as Addons (the sync's orphan sweep).
//
// It does not own: what Git declares (the sync), placement (scheduler),
// running containers (node). It may import bus, manifests and
// reconciler/{cache,workqueue,events,scheduler,ownership}; never the sync
// (reconciler/gitops) nor node/podman.
package controllers

// Package controllers holds the control plane: the controllers that turn
// declared objects into running pods and keep their status, and the
// manager that runs them.
//
// Each controller is a small type, as in kube-controller-manager's
// pkg/controller/<name>: it owns its queue, its reconcile and its
// handlers, which it adds to the shared caches itself (register, before
// they run). The workload controllers (replicaSetController,
// deploymentController, statefulSetController, daemonSetController,
// jobController, cronJobController, rcController, hpaController) embed
// queued, which routes each an object of its kind and the controller of
// an object it controls; gcController, the service and endpoints
// controllers, the assigner and the pod status mirror route their own.
// nodeLifecycle is a loop on a ticker rather than a queue. All of them
// read and write through one shared value (the objects store and cache,
// the nodes cache, the expectations, the event recorder, requeue), on
// which the helpers several controllers use are methods (podsOwnedBy,
// reconcileReplicated, finishDeletion...).
//
// ControlPlane is the configuration and the manager: Run builds the
// shared parts, builds each controller with its constructor and lets it
// register, starts the caches, waits for them to sync, starts each
// controller's workers and the resync loop, and stops them as one when
// any part fails (an errgroup: Run returns once all have stopped).
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

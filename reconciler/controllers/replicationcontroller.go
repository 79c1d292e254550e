package controllers

import (
	"context"

	"github.com/capstan-io/capstan/manifests"
)

// rcController keeps ReplicationControllers' pods.
type rcController struct{ queued }

func newRCController(sh *shared) *rcController {
	return &rcController{newQueued(sh, "ReplicationController")}
}

// reconcile keeps a ReplicationController's pods: it
// is the ReplicaSet's code path with an equality selector, which defaults
// to the template's labels as in Kubernetes.
func (ctl *rcController) reconcile(ctx context.Context, key string) error {
	c, ok := ctl.objects.Get(key)
	if !ok {
		return nil // its pods are garbage-collected
	}
	rc := c.Obj.(*manifests.ReplicationController)
	sel := rc.Spec.Selector
	if len(sel) == 0 && rc.Spec.Template != nil {
		sel = rc.Spec.Template.Labels
	}
	return ctl.reconcileReplicated(ctx, key, c, replicated{
		kind: "ReplicationController", obj: rc, replicas: manifests.Int32(rc.Spec.Replicas, 1), minReady: rc.Spec.MinReadySeconds,
		matches:  func(labels map[string]string) bool { return len(sel) > 0 && equalitySelects(sel, labels) },
		template: rc.Spec.Template, status: rc.Status,
		withStatus: func(st manifests.ReplicaSetStatus) manifests.Object {
			upd := *rc // shallow: only the status changes, and it is new
			upd.Status = st
			return &upd
		},
	})
}

// equalitySelects reports whether labels hold every key=value of sel.
func equalitySelects(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

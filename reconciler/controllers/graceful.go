package controllers

import (
	"context"
	"errors"
	"fmt"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// Graceful deletion, Kubernetes' model. Deleting a pod that runs on a node
// only marks it: metadata.deletionTimestamp and
// deletionGracePeriodSeconds. Controllers stop counting it at once (they
// skip pods with a deletionTimestamp), the scheduler keeps counting its
// resources and host ports on its node, the endpoints controller lists it
// not ready and terminating. The node reports it not ready (reason
// Terminating), waits its termination delay so proxies drop it, runs
// preStop hooks and stops the containers within the grace period, removes
// the runtime pod and reports it removed; the status mirror then deletes
// the object for good. A pod of a lost node is force-deleted by the node
// lifecycle controller after the eviction timeout.

// DeleteGracefully deletes the object at key. A pod bound to a node, and
// not finished, is marked for deletion instead (see above); an unbound or
// finished pod, and any other kind, is deleted at once. rev is the
// revision the caller saw (0: any); a pod already terminating is left as
// it is. Errors wrap bus.ErrNotFound and bus.ErrConflict.
func DeleteGracefully(ctx context.Context, s bus.Store, key string, rev uint64) error {
	kind, _, _, _ := manifests.SplitKey(key)
	if kind != "Pod" {
		return cache.DeleteObject(ctx, s, key, rev)
	}
	for attempt := 0; ; attempt++ {
		obj, cur, err := cache.GetObject(ctx, s, key)
		if err != nil {
			return fmt.Errorf("delete %s: %w", key, err)
		}
		if rev != 0 && cur != rev {
			return fmt.Errorf("delete %s: %w", key, bus.ErrConflict)
		}
		pod, ok := obj.(*manifests.Pod)
		if !ok {
			return cache.DeleteObject(ctx, s, key, cur)
		}
		if pod.DeletionTimestamp != nil {
			return nil
		}
		if pod.Spec.NodeName == "" || manifests.IsPodTerminal(pod) {
			return cache.DeleteObject(ctx, s, key, cur)
		}
		pod.DeletionTimestamp = manifests.Now()
		pod.DeletionGracePeriodSeconds = manifests.Ptr(podGraceSeconds(pod))
		_, err = cache.UpdateObject(ctx, s, pod, cur)
		if errors.Is(err, bus.ErrConflict) && rev == 0 && attempt < 5 {
			continue // a status write meanwhile: read again
		}
		return err
	}
}

// podGraceSeconds is a pod's termination grace period (default 30 s).
func podGraceSeconds(pod *manifests.Pod) int64 {
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		return *g
	}
	return 30
}

package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// runNodeLifecycle marks nodes whose heartbeats stopped NotReady after the
// grace period, and deletes the pods of nodes NotReady for longer than the
// eviction timeout so their controllers replace them elsewhere. That
// deletion is forced (the object goes at once, terminating or not): the
// node is not there to stop the pods and confirm.
func (cp *ControlPlane) runNodeLifecycle(ctx context.Context) error {
	// A short tick: a lost node's pods are replaced within a tick of
	// the grace period and of the eviction timeout, and a tick is a walk
	// of the cached nodes (about 0.1 ms for a thousand).
	tick := min(cp.NodeGracePeriod/4, 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := time.Now()
		for _, c := range cp.nodes.List("Node", "") {
			node := c.Obj.(*manifests.Node)
			if err := cp.checkNode(ctx, c, node, now); err != nil && !errors.Is(err, bus.ErrConflict) {
				cp.Log.Warn("node lifecycle", "node", node.Name, "err", err)
			}
		}
	}
}

func (cp *ControlPlane) checkNode(ctx context.Context, c *cache.Cached, node *manifests.Node, now time.Time) error {
	ready := manifests.FindCondition(node.Status.Conditions, "Ready")
	if ready == nil {
		return nil
	}
	if ready.Status == manifests.ConditionTrue {
		if ready.LastHeartbeatTime == nil || now.Sub(ready.LastHeartbeatTime.Time) <= cp.NodeGracePeriod {
			return nil
		}
		upd := cache.Clone(node)
		upd.Status.Conditions = manifests.SetCondition(upd.Status.Conditions, manifests.Condition{
			Type: "Ready", Status: manifests.ConditionUnknown, Reason: "NodeStatusUnknown",
			Message:           fmt.Sprintf("no heartbeat for %s", now.Sub(ready.LastHeartbeatTime.Time).Round(time.Second)),
			LastHeartbeatTime: ready.LastHeartbeatTime,
		})
		b, err := cache.Encode(upd)
		if err != nil {
			return err
		}
		if _, err := cp.Nodes.Update(ctx, c.Key, b, c.Rev); err != nil {
			return err
		}
		cp.Log.Warn("node not ready", "node", node.Name, "last_heartbeat", ready.LastHeartbeatTime.Time)
		cp.event(ctx, node, "Warning", "NodeNotReady", "Node stopped posting status")
		return nil
	}
	// Not ready: evict after the timeout.
	since := ready.LastTransitionTime
	if since == nil || now.Sub(since.Time) < cp.PodEvictionTimeout {
		return nil
	}
	// The deletes go out together: a node holds up to 110 pods.
	return inParallel(cp.objects.OnNode(node.Name), createParallel, func(p *cache.Cached) error {
		pod := p.Obj.(*manifests.Pod)
		if err := cache.DeleteObject(ctx, cp.Objects, p.Key, p.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
			return err
		}
		cp.Log.Info("evicted pod of lost node", "node", node.Name, "pod", pod.Namespace+"/"+pod.Name)
		cp.event(ctx, pod, "Warning", "NodeLost", fmt.Sprintf("Deleted: node %s not ready since %s", node.Name, since.Time.Format(time.RFC3339)))
		return nil
	})
}

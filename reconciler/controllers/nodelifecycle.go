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

// nodeLifecycle watches the nodes' heartbeats: a loop on a ticker, not a
// queue (ControlPlane.NodeGracePeriod, PodEvictionTimeout).
type nodeLifecycle struct {
	*shared
	nodeStore                    bus.Store // the nodes (ControlPlane.Nodes)
	gracePeriod, evictionTimeout time.Duration
}

func newNodeLifecycle(sh *shared, cp *ControlPlane) *nodeLifecycle {
	return &nodeLifecycle{shared: sh, nodeStore: cp.Nodes, gracePeriod: cp.NodeGracePeriod, evictionTimeout: cp.PodEvictionTimeout}
}

// run marks nodes whose heartbeats stopped NotReady after the
// grace period, and deletes the pods of nodes NotReady for longer than the
// eviction timeout so their controllers replace them elsewhere. That
// deletion is forced (the object goes at once, terminating or not): the
// node is not there to stop the pods and confirm.
func (ctl *nodeLifecycle) run(ctx context.Context) error {
	// A short tick: a lost node's pods are replaced within a tick of
	// the grace period and of the eviction timeout, and a tick is only a
	// walk of the cached nodes.
	tick := min(ctl.gracePeriod/4, 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := time.Now()
		for _, c := range ctl.nodes.List("Node", "") {
			node := c.Obj.(*manifests.Node)
			if err := ctl.checkNode(ctx, c, node, now); err != nil && !errors.Is(err, bus.ErrConflict) {
				ctl.log.Warn("node lifecycle", "node", node.Name, "err", err)
			}
		}
	}
}

func (ctl *nodeLifecycle) checkNode(ctx context.Context, c *cache.Cached, node *manifests.Node, now time.Time) error {
	ready := manifests.FindCondition(node.Status.Conditions, "Ready")
	if ready == nil {
		return nil
	}
	if ready.Status == manifests.ConditionTrue {
		if ready.LastHeartbeatTime == nil || now.Sub(ready.LastHeartbeatTime.Time) <= ctl.gracePeriod {
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
		if _, err := ctl.nodeStore.Update(ctx, c.Key, b, c.Rev); err != nil {
			return err
		}
		ctl.log.Warn("node not ready", "node", node.Name, "last_heartbeat", ready.LastHeartbeatTime.Time)
		ctl.event(ctx, node, "Warning", "NodeNotReady", "Node stopped posting status")
		return nil
	}
	// Not ready: evict after the timeout.
	since := ready.LastTransitionTime
	if since == nil || now.Sub(since.Time) < ctl.evictionTimeout {
		return nil
	}
	// The deletes go out together: a node holds up to 110 pods.
	return inParallel(ctl.objects.OnNode(node.Name), createParallel, func(p *cache.Cached) error {
		pod := p.Obj.(*manifests.Pod)
		if err := cache.DeleteObject(ctx, ctl.store, p.Key, p.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
			return err
		}
		ctl.log.Info("evicted pod of lost node", "node", node.Name, "pod", pod.Namespace+"/"+pod.Name)
		ctl.event(ctx, pod, "Warning", "NodeLost", fmt.Sprintf("Deleted: node %s not ready since %s", node.Name, since.Time.Format(time.RFC3339)))
		return nil
	})
}

package controllers

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/events"
	"github.com/capstan-io/capstan/reconciler/workqueue"
)

// shared is what every controller of the control plane reads and writes
// through: the objects on the bus and their cache, the nodes' cache, the
// expectations of the controllers that make pods, the event recorder and
// the queues of the workload controllers (for requeue). The manager
// (ControlPlane.Run) builds it once; each controller embeds it.
type shared struct {
	store     bus.Store    // the objects (ControlPlane.Objects)
	podStatus bus.Store    // the nodes' pod status reports (ControlPlane.Status)
	objects   *cache.Cache // the objects, cached
	nodes     *cache.Cache // the nodes, cached
	exp       *expectations
	log       *slog.Logger
	rec       *events.Recorder
	queues    map[string]*workqueue.Queue // workload kind -> its controller's queue
}

func newShared(cp *ControlPlane) *shared {
	objects := cp.Cache // the process's, shared with the sync
	if objects == nil {
		objects = cache.New(cp.Objects, cp.Log)
	}
	return &shared{
		store:     cp.Objects,
		podStatus: cp.Status,
		objects:   objects,
		nodes:     cache.New(cp.Nodes, cp.Log),
		exp:       newExpectations(),
		log:       cp.Log,
		rec:       events.NewRecorder(cp.Events, "control-plane", cp.Log),
		queues:    map[string]*workqueue.Queue{},
	}
}

// requeue queues key of a workload kind after d: for moments no event
// marks, such as minReadySeconds passing or a deadline.
func (s *shared) requeue(kind, key string, d time.Duration) {
	if q := s.queues[kind]; q != nil {
		q.AddAfter(key, d)
	}
}

// keysOf lists the cached keys of kind, for a controller's resync.
func (s *shared) keysOf(kind string) func(keep func(string) bool) []string {
	return func(keep func(string) bool) []string {
		return s.objects.Keys(kind, func(c *cache.Cached) bool { return keep(c.Key) })
	}
}

// terminatingPods lists the pods being deleted, so that one whose node
// went away without a word is still deleted by the next resync.
func (s *shared) terminatingPods(keep func(string) bool) []string {
	return s.objects.Keys("Pod", func(c *cache.Cached) bool {
		return keep(c.Key) && c.Obj.GetObjectMeta().DeletionTimestamp != nil
	})
}

// event records an event for obj, best effort.
func (s *shared) event(ctx context.Context, obj manifests.Object, typ, reason, msg string) {
	s.rec.Event(ctx, obj, typ, reason, msg)
}

// podsOwnedBy returns the cached pods controlled by owner.
func (s *shared) podsOwnedBy(owner manifests.Object) []*cache.Cached {
	return s.objects.Owned(owner.GetObjectMeta().UID, "Pod")
}

// heldKeys returns pk as the objects cache holds it, and node once for
// all its pods: a controller holding a key per pod holds no copy of its
// own, and none of the watch message's subject a key it was cut from
// would keep alive.
func (s *shared) heldKeys(node, pk string) (string, string) {
	if c, ok := s.objects.Get(pk); ok {
		pk = c.Key
	}
	return cache.Str(node), pk
}

// finishDeletion deletes a terminating pod for good once nothing runs it:
// its node reported it removed, it was never bound, or its node is gone.
// It reports whether the pod was deleted (or is already gone).
func (s *shared) finishDeletion(ctx context.Context, c *cache.Cached, rep *manifests.PodStatusReport) (bool, error) {
	pod := c.Obj.(*manifests.Pod)
	if pod.DeletionTimestamp == nil {
		return false, nil
	}
	why := ""
	_, nodeKnown := s.nodes.Get(pod.Spec.NodeName)
	switch {
	case pod.Spec.NodeName == "":
		why = "never bound"
	case rep != nil && rep.Removed && rep.UID == pod.UID && rep.Node == pod.Spec.NodeName:
		why = "removed by its node"
	case !nodeKnown:
		why = "its node is gone"
	default:
		return false, nil
	}
	if err := cache.DeleteObject(ctx, s.store, c.Key, c.Rev); err != nil {
		if errors.Is(err, bus.ErrNotFound) {
			return true, nil
		}
		return false, err
	}
	s.log.Debug("pod deleted", "pod", pod.Namespace+"/"+pod.Name, "reason", why)
	return true, nil
}

// kindOf is the kind of a changed object: cur's, or old's if it was
// deleted.
func kindOf(old, cur manifests.Object) string {
	if cur != nil {
		return cur.GetTypeMeta().Kind
	}
	return old.GetTypeMeta().Kind
}

// queued is what a keyed controller is made of: the shared parts and a
// queue of its own. A workload controller's queue is also known by its
// kind, for requeue.
type queued struct {
	*shared
	kind  string // the kind it reconciles, "" if none (gc)
	queue *workqueue.Queue
}

func newQueued(sh *shared, kind string) queued {
	q := queued{shared: sh, kind: kind, queue: workqueue.New()}
	if kind != "" {
		sh.queues[kind] = q.queue
	}
	return q
}

func (q *queued) work() *queued { return q }

// register routes a workload controller its events: see follow.
func (q *queued) register(objects, _ *cache.Cache) { objects.AddHandler(q.follow) }

// follow queues an object of the controller's kind when it changes, and
// its controller when an object it controls changes (but for a replica
// controller's pod that was only bound to a node: see boundOnly).
func (q *queued) follow(key string, old, cur manifests.Object) {
	obj := cur
	if obj == nil {
		obj = old
	}
	if obj.GetTypeMeta().Kind == q.kind {
		q.queue.Add(key)
	}
	if ref := obj.GetObjectMeta().Controller(); ref != nil && ref.Kind == q.kind && !(replicaKinds[q.kind] && boundOnly(old, cur)) {
		q.queue.Add(cache.OwnerKey(obj))
	}
}

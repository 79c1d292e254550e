package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/workqueue"
)

// statusMirror copies what nodes report in the status bucket into the Pod
// objects, so readers (controllers, the CLI) find one object. A report is
// taken only from the node the pod is bound to and for the pod's own uid;
// while that node is not Ready the pod is shown not ready. It also ends a
// graceful deletion: a terminating pod whose node reported it removed (or
// whose node is gone) is deleted for good (graceful.go).
//
// It holds a report only until it is mirrored: the Pod then shows it, and
// a second copy of every status is too much heap (docs/BENCHMARKS.md).
// The rare paths that need a mirrored report
// again (a pod shown NodeLost whose node is back) read it from the bus.
// A report is held as written and decoded by the worker that mirrors it:
// the watch is one goroutine for every report of the cluster, and a
// report a newer one replaced before it was mirrored is never decoded.
type statusMirror struct {
	*shared
	queue   *workqueue.Queue
	mu      sync.Mutex
	reports map[string]report // pod key -> latest report
	// unmirrored holds the latest reports not yet mirrored, as written:
	// apart from reports, which holds a report's node and revision for
	// as long as it exists, so that the map a burst fills empties after it.
	unmirrored workqueue.PeakMap[string, []byte]
	synced     chan struct{}
}

type report struct {
	node string // the node that wrote it: its key is node.<ns>.<name>
	rev  uint64
}

// key is the report's key, for pod key pk.
func (r report) key(pk string) string { return assignmentKeyOf(r.node, pk) }

func newStatusMirror(sh *shared) *statusMirror {
	return &statusMirror{shared: sh, queue: workqueue.New(), reports: map[string]report{}, synced: make(chan struct{})}
}

// register routes the mirror its events: every pod's, and a node's change
// of readiness, which shows on its pods.
func (s *statusMirror) register(objects, nodes *cache.Cache) {
	objects.AddHandler(func(key string, old, cur manifests.Object) {
		if kindOf(old, cur) == "Pod" {
			s.queue.Add(key)
		}
	})
	nodes.AddHandler(func(key string, old, cur manifests.Object) {
		wasReady := old != nil && manifests.IsNodeReady(old.(*manifests.Node))
		isReady := cur != nil && manifests.IsNodeReady(cur.(*manifests.Node))
		if wasReady == isReady {
			return
		}
		for _, p := range objects.OnNode(key) {
			s.queue.Add(p.Key)
		}
	})
}

func (s *statusMirror) watch(ctx context.Context, q *workqueue.Queue) error {
	synced := false
	return bus.ReflectInto(ctx, s.podStatus, ">", s.log, s, func(e bus.Entry) {
		if e.Op == bus.OpSynced {
			synced = true
			close(s.synced)
			return
		}
		node, pk, ok := splitAssignmentKey(e.Key)
		if !ok {
			return
		}
		node, pk = s.heldKeys(node, pk)
		s.mu.Lock()
		if e.Op == bus.OpDelete {
			if cur, ok := s.reports[pk]; ok && cur.node == node {
				delete(s.reports, pk)
				s.unmirrored.Del(pk)
			}
		} else {
			s.reports[pk] = report{node: node, rev: e.Revision}
			s.unmirrored.Set(pk, e.Value)
		}
		s.mu.Unlock()
		if synced {
			q.Add(pk)
		}
	})
}

// Revision is the revision of the report held at key, the latest of its
// pod's (bus.Revisions: the watch keeps no copy of its own).
// The watch asks it of every report, and the handler builds the pod key
// again: here it is built on the stack (a lookup by string(bytes) does
// not allocate).
func (s *statusMirror) Revision(key string) (uint64, bool) {
	node, rest, ok := cutAssignmentKey(key)
	if !ok {
		return 0, false
	}
	var buf [128]byte
	pk := append(append(buf[:0], "Pod."...), rest...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.reports[string(pk)]; ok && cur.node == node {
		return cur.rev, true
	}
	return 0, false
}

// Known lists the reports held, by key (bus.Revisions).
func (s *statusMirror) Known() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.reports))
	for pk, r := range s.reports {
		out[assignmentKeyOf(r.node, pk)] = r.rev
	}
	return out
}

func (s *statusMirror) reconcile(ctx context.Context, podKey string) error {
	s.mu.Lock()
	rep, hasReport := s.reports[podKey]
	raw, _ := s.unmirrored.Get(podKey) // nil once mirrored
	s.mu.Unlock()
	c, ok := s.objects.Get(podKey)
	if !ok {
		if hasReport {
			// The pod is gone; its node removes its report when it stops
			// the pod, but a node that is gone for good cannot.
			if err := s.podStatus.Delete(ctx, rep.key(podKey), rep.rev); err != nil && !errors.Is(err, bus.ErrNotFound) && !errors.Is(err, bus.ErrConflict) {
				return err
			}
		}
		return nil
	}
	pod := c.Obj.(*manifests.Pod)
	node, nodeKnown := s.nodes.Get(pod.Spec.NodeName)
	nodeReady := nodeKnown && manifests.IsNodeReady(node.Obj.(*manifests.Node))
	var r *manifests.PodStatusReport
	if hasReport && raw != nil {
		r = new(manifests.PodStatusReport)
		if err := json.Unmarshal(raw, r); err != nil {
			s.log.Warn("skip undecodable status report", "key", rep.key(podKey), "err", err)
			s.mirrored(podKey, rep.rev) // not decoded again
			r, hasReport = nil, false
		}
	} else if hasReport {
		// Mirrored already: the pod shows it, unless the pod is
		// terminating (its report decides when it is gone) or shown
		// NodeLost while its node is back.
		if pod.DeletionTimestamp == nil && (!nodeReady || !shownNodeLost(pod)) {
			hasReport = false
		} else {
			var err error
			if r, err = s.fetch(ctx, rep.key(podKey)); err != nil {
				return err
			}
		}
		hasReport = hasReport && r != nil
	}
	if done, err := s.finishDeletion(ctx, c, r); done || err != nil {
		return err
	}
	if pod.Spec.NodeName == "" {
		return nil
	}
	st := pod.Status
	fresh := hasReport && r.UID == pod.UID && r.Node == pod.Spec.NodeName
	if fresh {
		st = r.Status
		if sc := manifests.FindCondition(pod.Status.Conditions, "PodScheduled"); sc != nil {
			st.Conditions = append([]manifests.Condition{*sc}, st.Conditions...)
		}
	}
	if !nodeReady {
		st = nodeLostStatus(st, pod.Status)
	}
	if statusDiffers(&st, &pod.Status) {
		upd := *pod // shallow: only the status changes, and it is new
		if fresh {
			// The report's status is this reconcile's alone: shared
			// with the cached pods as the cache shares what it decodes,
			// so that the cache can take upd back as it is.
			s.objects.InternStatus(&st)
		}
		upd.Status = st
		if _, err := cache.UpdateEchoed(ctx, s.store, s.objects, &upd, c.Rev); err != nil {
			if errors.Is(err, bus.ErrNotFound) {
				return nil
			}
			return err
		}
	}
	if hasReport {
		s.mirrored(podKey, rep.rev)
	}
	return nil
}

// mirrored drops the report of rev, now that the pod shows it, unless a
// newer one came meanwhile.
func (s *statusMirror) mirrored(podKey string, rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.reports[podKey]; ok && cur.rev == rev {
		s.unmirrored.Del(podKey)
	}
}

// fetch reads a mirrored report again from the bus (nil if it is gone).
func (s *statusMirror) fetch(ctx context.Context, key string) (*manifests.PodStatusReport, error) {
	e, err := s.podStatus.Get(ctx, key)
	if errors.Is(err, bus.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read status report %s: %w", key, err)
	}
	var r manifests.PodStatusReport
	if err := json.Unmarshal(e.Value, &r); err != nil {
		return nil, fmt.Errorf("decode status report %s: %w", key, err)
	}
	return &r, nil
}

// statusDiffers reports whether a and b encode differently. Most reports
// change nothing the pod shows, and a deep comparison finds that without
// the two encodings a hash takes; a difference it sees (nil and empty
// differ to it, not to JSON) is hashed, unless a field that encodes as
// it is (the phase, the number of conditions or of container statuses)
// already differs, as it does for most of the statuses that are written.
//
// It takes pointers: a PodStatus passed to reflect.DeepEqual by value is
// copied to the heap twice.
func statusDiffers(a, b *manifests.PodStatus) bool {
	switch {
	case reflect.DeepEqual(a, b):
		return false
	case a.Phase != b.Phase || len(a.Conditions) != len(b.Conditions) || len(a.ContainerStatuses) != len(b.ContainerStatuses):
		return true
	}
	return manifests.Hash(*a) != manifests.Hash(*b)
}

// shownNodeLost reports whether the pod shows a condition nodeLostStatus
// set.
func shownNodeLost(pod *manifests.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Reason == "NodeLost" {
			return true
		}
	}
	return false
}

// nodeLostStatus marks a pod whose node stopped reporting as not ready.
// The transition time already shown is kept, so repeated reconciles write
// nothing new.
func nodeLostStatus(st, shown manifests.PodStatus) manifests.PodStatus {
	st.Conditions = append([]manifests.Condition(nil), st.Conditions...)
	for _, t := range []string{"Ready", "ContainersReady"} {
		if c := manifests.FindCondition(st.Conditions, t); c != nil && c.Status == manifests.ConditionTrue {
			lost := manifests.Condition{Type: t, Status: manifests.ConditionFalse, Reason: "NodeLost", Message: "the node stopped reporting", LastTransitionTime: manifests.Now()}
			if prev := manifests.FindCondition(shown.Conditions, t); prev != nil && prev.Reason == "NodeLost" {
				lost.LastTransitionTime = prev.LastTransitionTime
			}
			*c = lost
		}
	}
	return st
}

package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"sync"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// statusMirror copies what nodes report in the status bucket into the Pod
// objects, so readers (controllers, the CLI) find one object. A report is
// taken only from the node the pod is bound to and for the pod's own uid;
// while that node is not Ready the pod is shown not ready. It also ends a
// graceful deletion: a terminating pod whose node reported it removed (or
// whose node is gone) is deleted for good (graceful.go).
type statusMirror struct {
	cp      *ControlPlane
	mu      sync.Mutex
	reports map[string]report // pod key -> latest report
	synced  chan struct{}
}

type report struct {
	key string
	rev uint64
	r   manifests.PodStatusReport
}

func newStatusMirror(cp *ControlPlane) *statusMirror {
	return &statusMirror{cp: cp, reports: map[string]report{}, synced: make(chan struct{})}
}

func (s *statusMirror) watch(ctx context.Context, q *Queue) error {
	synced := false
	return bus.Reflect(ctx, s.cp.Status, ">", s.cp.Log, func(e bus.Entry) {
		if e.Op == bus.OpSynced {
			synced = true
			close(s.synced)
			return
		}
		pk, ok := podKeyOfAssignment(e.Key)
		if !ok {
			return
		}
		s.mu.Lock()
		if e.Op == bus.OpDelete {
			if cur, ok := s.reports[pk]; ok && cur.key == e.Key {
				delete(s.reports, pk)
			}
		} else {
			var r manifests.PodStatusReport
			if err := json.Unmarshal(e.Value, &r); err == nil {
				s.reports[pk] = report{key: e.Key, rev: e.Revision, r: r}
			}
		}
		s.mu.Unlock()
		if synced {
			q.Add(pk)
		}
	})
}

func (s *statusMirror) reconcile(ctx context.Context, podKey string) error {
	s.mu.Lock()
	rep, hasReport := s.reports[podKey]
	s.mu.Unlock()
	c, ok := s.cp.objects.Get(podKey)
	if !ok {
		if hasReport {
			// The pod is gone; its node removes its report when it stops
			// the pod, but a node that is gone for good cannot.
			if err := s.cp.Status.Delete(ctx, rep.key, rep.rev); err != nil && !errors.Is(err, bus.ErrNotFound) && !errors.Is(err, bus.ErrConflict) {
				return err
			}
		}
		return nil
	}
	var r *manifests.PodStatusReport
	if hasReport {
		r = &rep.r
	}
	if done, err := s.cp.finishDeletion(ctx, c, r); done || err != nil {
		return err
	}
	pod := c.Obj.(*manifests.Pod)
	if pod.Spec.NodeName == "" {
		return nil
	}
	st := pod.Status
	if hasReport && rep.r.UID == pod.UID && rep.r.Node == pod.Spec.NodeName {
		st = rep.r.Status
		if sc := manifests.FindCondition(pod.Status.Conditions, "PodScheduled"); sc != nil {
			st.Conditions = append([]manifests.Condition{*sc}, st.Conditions...)
		}
	}
	if n, ok := s.cp.nodes.Get(pod.Spec.NodeName); !ok || !manifests.IsNodeReady(n.Obj.(*manifests.Node)) {
		st = nodeLostStatus(st, pod.Status)
	}
	if manifests.Hash(st) == manifests.Hash(pod.Status) {
		return nil
	}
	upd := Clone(pod)
	upd.Status = st
	if _, err := UpdateObject(ctx, s.cp.Objects, upd, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
		return err
	}
	return nil
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

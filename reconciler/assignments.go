package reconciler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// assigner keeps the assignments bucket equal to the bound pods: one entry
// <node>.<namespace>.<pod> holding the pod as its node must run it.
type assigner struct {
	cp     *ControlPlane
	mu     sync.Mutex
	byPod  map[string]map[string]assignment // pod key -> assignment key -> entry
	synced chan struct{}
}

type assignment struct {
	rev  uint64
	hash string
}

func newAssigner(cp *ControlPlane) *assigner {
	return &assigner{cp: cp, byPod: map[string]map[string]assignment{}, synced: make(chan struct{})}
}

// podKeyOfAssignment maps <node>.<ns>.<name> to Pod.<ns>.<name>.
func podKeyOfAssignment(key string) (string, bool) {
	_, rest, ok := strings.Cut(key, ".")
	if !ok || !strings.Contains(rest, ".") {
		return "", false
	}
	return "Pod." + rest, true
}

func (a *assigner) watch(ctx context.Context, q *Queue) error {
	ch, err := a.cp.Assignments.Watch(ctx, ">")
	if err != nil {
		return fmt.Errorf("watch assignments: %w", err)
	}
	synced := false
	for e := range ch {
		if e.Op == bus.OpSynced {
			if !synced {
				synced = true
				close(a.synced)
			}
			continue
		}
		pk, ok := podKeyOfAssignment(e.Key)
		if !ok {
			continue
		}
		a.mu.Lock()
		m := a.byPod[pk]
		if e.Op == bus.OpDelete {
			delete(m, e.Key)
			if len(m) == 0 {
				delete(a.byPod, pk)
			}
		} else {
			if m == nil {
				m = map[string]assignment{}
				a.byPod[pk] = m
			}
			m[e.Key] = assignment{rev: e.Revision, hash: manifests.Hash(string(e.Value))}
		}
		a.mu.Unlock()
		if synced {
			q.Add(pk)
		}
	}
	return ctx.Err()
}

// assignmentOf is the pod as written for its node: no status, no revision.
func assignmentOf(pod *manifests.Pod) ([]byte, error) {
	p := Clone(pod)
	p.Status = manifests.PodStatus{}
	return Encode(p)
}

func (a *assigner) reconcile(ctx context.Context, podKey string) error {
	var want string
	var value []byte
	if c, ok := a.cp.objects.Get(podKey); ok {
		pod := c.Obj.(*manifests.Pod)
		if pod.Spec.NodeName != "" {
			want = manifests.AssignmentKey(pod.Spec.NodeName, pod.Namespace, pod.Name)
			var err error
			if value, err = assignmentOf(pod); err != nil {
				return err
			}
		}
	}
	a.mu.Lock()
	have := make(map[string]assignment, len(a.byPod[podKey]))
	for k, v := range a.byPod[podKey] {
		have[k] = v
	}
	a.mu.Unlock()
	for k, v := range have {
		if k == want {
			continue
		}
		if err := a.cp.Assignments.Delete(ctx, k, v.rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
			return fmt.Errorf("delete assignment %s: %w", k, err)
		}
	}
	if want == "" {
		return nil
	}
	if cur, ok := have[want]; ok {
		if cur.hash == manifests.Hash(string(value)) {
			return nil
		}
		if _, err := a.cp.Assignments.Update(ctx, want, value, cur.rev); err != nil {
			return fmt.Errorf("update assignment %s: %w", want, err)
		}
		return nil
	}
	if _, err := a.cp.Assignments.Create(ctx, want, value); err != nil {
		return fmt.Errorf("create assignment %s: %w", want, err)
	}
	return nil
}

package reconciler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
)

// expectations remembers the pods a controller created or deleted until the
// cache shows them, so a reconcile that runs before the watch catches up
// does not create or delete the same pods twice.
type expectations struct {
	mu  sync.Mutex
	m   map[string]*expected
	ttl time.Duration
}

type expected struct {
	adds, dels map[string]bool
	at         time.Time
}

func newExpectations() *expectations {
	return &expectations{m: map[string]*expected{}, ttl: 30 * time.Second}
}

func (e *expectations) expect(owner string, adds, dels []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &expected{adds: map[string]bool{}, dels: map[string]bool{}, at: time.Now()}
	for _, k := range adds {
		x.adds[k] = true
	}
	for _, k := range dels {
		x.dels[k] = true
	}
	e.m[owner] = x
}

// satisfied reports whether the cache shows every expected change of owner.
func (e *expectations) satisfied(owner string, c *Cache) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[owner]
	if !ok {
		return true
	}
	if time.Since(x.at) > e.ttl {
		delete(e.m, owner)
		return true
	}
	for k := range x.adds {
		if _, ok := c.Get(k); !ok {
			return false
		}
	}
	for k := range x.dels {
		if _, ok := c.Get(k); ok {
			return false
		}
	}
	delete(e.m, owner)
	return true
}

// maxBurst bounds the pods one reconcile creates or deletes.
const maxBurst = 500

func (cp *ControlPlane) reconcileReplicaSet(ctx context.Context, key string) error {
	c, ok := cp.objects.Get(key)
	if !ok {
		return nil // its pods are garbage-collected
	}
	if !cp.exp.satisfied(key, cp.objects) {
		return nil // the pod events will queue it again
	}
	rs := c.Obj.(*manifests.ReplicaSet)
	desired := manifests.Int32(rs.Spec.Replicas, 1)
	var active []*Cached
	for _, p := range cp.podsOwnedBy(rs) {
		pod := p.Obj.(*manifests.Pod)
		if !manifests.IsPodTerminal(pod) && pod.DeletionTimestamp == nil {
			active = append(active, p)
		}
	}
	diff := int(desired) - len(active)
	switch {
	case diff > 0:
		diff = min(diff, maxBurst)
		var adds []string
		pods := make([]*manifests.Pod, 0, diff)
		for range diff {
			pod := podFromTemplate(rs, &rs.Spec.Template, rs.Name+"-"+RandomSuffix(5))
			pods = append(pods, pod)
			adds = append(adds, manifests.KeyOf(pod))
		}
		cp.exp.expect(key, adds, nil)
		for _, pod := range pods {
			if _, err := CreateObject(ctx, cp.Objects, pod); err != nil {
				cp.exp.expect(key, nil, nil)
				return fmt.Errorf("replicaset %s: %w", key, err)
			}
		}
		cp.event(ctx, rs, "Normal", "SuccessfulCreate", fmt.Sprintf("Created %d pod(s)", diff))
	case diff < 0:
		n := min(-diff, maxBurst)
		slices.SortFunc(active, func(a, b *Cached) int {
			ra, rb := podRank(a.Obj.(*manifests.Pod)), podRank(b.Obj.(*manifests.Pod))
			if ra.Less(rb) {
				return -1
			}
			if rb.Less(ra) {
				return 1
			}
			return 0
		})
		var dels []string
		for _, p := range active[:n] {
			dels = append(dels, p.Key)
		}
		cp.exp.expect(key, nil, dels)
		for _, p := range active[:n] {
			if err := DeleteObject(ctx, cp.Objects, p.Key, 0); err != nil {
				cp.exp.expect(key, nil, nil)
				return fmt.Errorf("replicaset %s: %w", key, err)
			}
		}
		cp.event(ctx, rs, "Normal", "SuccessfulDelete", fmt.Sprintf("Deleted %d pod(s)", n))
	}
	return cp.updateReplicaSetStatus(ctx, c, rs)
}

func (cp *ControlPlane) updateReplicaSetStatus(ctx context.Context, c *Cached, rs *manifests.ReplicaSet) error {
	now := time.Now()
	st := manifests.ReplicaSetStatus{ObservedGeneration: rs.Generation}
	minReady := time.Duration(rs.Spec.MinReadySeconds) * time.Second
	requeue := false
	for _, p := range cp.podsOwnedBy(rs) {
		pod := p.Obj.(*manifests.Pod)
		if manifests.IsPodTerminal(pod) || pod.DeletionTimestamp != nil {
			continue
		}
		st.Replicas++
		if rs.Spec.Selector.Matches(pod.Labels) {
			st.FullyLabeledReplicas++
		}
		if manifests.IsPodReady(pod) {
			st.ReadyReplicas++
			if manifests.IsPodAvailable(pod, minReady, now) {
				st.AvailableReplicas++
			} else {
				requeue = true
			}
		}
	}
	if requeue {
		// A pod becomes available minReadySeconds after it is ready:
		// no event marks that moment.
		cp.requeue("ReplicaSet", manifests.KeyOf(rs), minReady)
	}
	if st == rs.Status {
		return nil
	}
	upd := Clone(rs)
	upd.Status = st
	if _, err := UpdateObject(ctx, cp.Objects, upd, c.Rev); err != nil {
		if errors.Is(err, bus.ErrNotFound) {
			return nil
		}
		return err
	}
	return nil
}

func podRank(p *manifests.Pod) PodRank {
	r := PodRank{Scheduled: p.Spec.NodeName != "", Running: p.Status.Phase == manifests.PodRunning, Ready: manifests.IsPodReady(p), Name: p.Name}
	if p.CreationTimestamp != nil {
		r.Created = p.CreationTimestamp.Unix()
	}
	return r
}

// podFromTemplate makes a new pod for owner from a template.
func podFromTemplate(owner manifests.Object, tmpl *manifests.PodTemplateSpec, name string) *manifests.Pod {
	t := Clone(&manifests.Pod{TypeMeta: manifests.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec})
	pod := &manifests.Pod{
		TypeMeta: manifests.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: manifests.ObjectMeta{
			Name:            name,
			Namespace:       owner.GetObjectMeta().Namespace,
			Labels:          maps.Clone(t.Labels),
			Annotations:     maps.Clone(t.Annotations),
			OwnerReferences: []manifests.OwnerReference{ownerRef(owner)},
		},
		Spec:   t.Spec,
		Status: manifests.PodStatus{Phase: manifests.PodPending},
	}
	return pod
}

package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
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
func (e *expectations) satisfied(owner string, c *cache.Cache) bool {
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
		// A pod being deleted gracefully counts as deleted: controllers
		// no longer count it.
		if o, ok := c.Get(k); ok && o.Obj.GetObjectMeta().DeletionTimestamp == nil {
			return false
		}
	}
	delete(e.m, owner)
	return true
}

// maxBurst bounds the pods one reconcile creates or deletes.
const maxBurst = 500

// replicated is what the pod-count logic needs of a ReplicaSet or a
// ReplicationController: both keep a number of pods made from one
// template and differ only in how their selector is written.
type replicated struct {
	kind     string
	obj      manifests.Object
	replicas int32
	minReady int32
	matches  func(labels map[string]string) bool
	template *manifests.PodTemplateSpec // nil: nothing to make pods from
	status   manifests.ReplicaSetStatus
	// withStatus returns a copy of the object holding st.
	withStatus func(st manifests.ReplicaSetStatus) manifests.Object
}

// replicaSetController keeps ReplicaSets' pods.
type replicaSetController struct{ queued }

func newReplicaSetController(sh *shared) *replicaSetController {
	return &replicaSetController{newQueued(sh, "ReplicaSet")}
}

func (ctl *replicaSetController) reconcile(ctx context.Context, key string) error {
	c, ok := ctl.objects.Get(key)
	if !ok {
		return nil // its pods are garbage-collected
	}
	rs := c.Obj.(*manifests.ReplicaSet)
	return ctl.reconcileReplicated(ctx, key, c, replicated{
		kind: "ReplicaSet", obj: rs, replicas: manifests.Int32(rs.Spec.Replicas, 1), minReady: rs.Spec.MinReadySeconds,
		matches: rs.Spec.Selector.Matches, template: &rs.Spec.Template, status: rs.Status,
		withStatus: func(st manifests.ReplicaSetStatus) manifests.Object {
			upd := *rs // shallow: only the status changes, and it is new
			upd.Status = st
			return &upd
		},
	})
}

// reconcileReplicated creates or deletes pods until r's count of active
// pods is its desired count, then writes its status.
func (sh *shared) reconcileReplicated(ctx context.Context, key string, c *cache.Cached, r replicated) error {
	if !sh.exp.satisfied(key, sh.objects) {
		return nil // the pod events will queue it again
	}
	var active []*cache.Cached
	for _, p := range sh.podsOwnedBy(r.obj) {
		pod := p.Obj.(*manifests.Pod)
		if !manifests.IsPodTerminal(pod) && pod.DeletionTimestamp == nil {
			active = append(active, p)
		}
	}
	diff := int(r.replicas) - len(active)
	if r.template == nil {
		diff = min(diff, 0)
	}
	switch {
	case diff > 0:
		diff = min(diff, maxBurst)
		var adds []string
		pods := make([]*manifests.Pod, 0, diff)
		for range diff {
			pod := podFromTemplate(r.obj, r.template, r.obj.GetObjectMeta().Name+"-"+cache.RandomSuffix(5))
			pods = append(pods, pod)
			adds = append(adds, manifests.KeyOf(pod))
		}
		sh.exp.expect(key, adds, nil)
		if err := createSlowStart(ctx, sh.store, pods); err != nil {
			sh.exp.expect(key, nil, nil)
			return fmt.Errorf("%s %s: %w", strings.ToLower(r.kind), key, err)
		}
		sh.event(ctx, r.obj, "Normal", "SuccessfulCreate", fmt.Sprintf("Created %d pod(s)", diff))
	case diff < 0:
		n := min(-diff, maxBurst)
		sortByDeletionCost(active)
		var dels []string
		for _, p := range active[:n] {
			dels = append(dels, p.Key)
		}
		sh.exp.expect(key, nil, dels)
		for _, p := range active[:n] {
			if err := DeleteGracefully(ctx, sh.store, p.Key, 0); err != nil && !errors.Is(err, bus.ErrNotFound) {
				sh.exp.expect(key, nil, nil)
				return fmt.Errorf("%s %s: %w", strings.ToLower(r.kind), key, err)
			}
		}
		sh.event(ctx, r.obj, "Normal", "SuccessfulDelete", fmt.Sprintf("Deleted %d pod(s)", n))
	}
	return sh.updateReplicatedStatus(ctx, c, r)
}

// replicaKinds are the controllers that count their pods alike
// (reconcileReplicated).
var replicaKinds = map[string]bool{"ReplicaSet": true, "ReplicationController": true}

// boundOnly reports whether the pod cur is old bound to a node and
// nothing a replica controller counts changed: its existence, phase,
// deletion, labels and readiness: a burst of binds would queue each
// pod's ReplicaSet once more for nothing (docs/BENCHMARKS.md). The node a
// pod is on ranks it for scale-down, which reads the cache when it
// happens.
func boundOnly(old, cur manifests.Object) bool {
	o, ok := old.(*manifests.Pod)
	c, ok2 := cur.(*manifests.Pod)
	if !ok || !ok2 || o.Spec.NodeName != "" || c.Spec.NodeName == "" || o.UID != c.UID ||
		o.Status.Phase != c.Status.Phase || o.DeletionTimestamp != nil || c.DeletionTimestamp != nil || !maps.Equal(o.Labels, c.Labels) {
		return false
	}
	or, cr := manifests.FindCondition(o.Status.Conditions, "Ready"), manifests.FindCondition(c.Status.Conditions, "Ready")
	if or == nil || cr == nil {
		return or == cr
	}
	ot, ct := or.LastTransitionTime, cr.LastTransitionTime
	return or.Status == cr.Status && (ot == ct || ot != nil && ct != nil && ot.Equal(ct.Time))
}

// sameController reports whether a and b name the same controller owner.
func sameController(a, b manifests.Object) bool {
	ra, rb := a.GetObjectMeta().Controller(), b.GetObjectMeta().Controller()
	return ra != nil && rb != nil && ra.UID == rb.UID
}

// sortByDeletionCost orders pods the cheapest to lose first (podRank).
func sortByDeletionCost(pods []*cache.Cached) {
	slices.SortFunc(pods, func(a, b *cache.Cached) int {
		ra, rb := podRank(a.Obj.(*manifests.Pod)), podRank(b.Obj.(*manifests.Pod))
		if ra.Less(rb) {
			return -1
		}
		if rb.Less(ra) {
			return 1
		}
		return 0
	})
}

func (sh *shared) updateReplicatedStatus(ctx context.Context, c *cache.Cached, r replicated) error {
	now := time.Now()
	st := manifests.ReplicaSetStatus{ObservedGeneration: r.obj.GetObjectMeta().Generation}
	minReady := time.Duration(r.minReady) * time.Second
	requeue := false
	for _, p := range sh.podsOwnedBy(r.obj) {
		pod := p.Obj.(*manifests.Pod)
		if manifests.IsPodTerminal(pod) || pod.DeletionTimestamp != nil {
			continue
		}
		st.Replicas++
		if r.matches(pod.Labels) {
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
		sh.requeue(r.kind, c.Key, minReady)
	}
	if st == r.status {
		return nil
	}
	if _, err := cache.UpdateObject(ctx, sh.store, r.withStatus(st), c.Rev); err != nil {
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
	t := cache.Clone(&manifests.Pod{TypeMeta: manifests.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec})
	pod := &manifests.Pod{
		TypeMeta: manifests.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: manifests.ObjectMeta{
			Name:            name,
			Namespace:       owner.GetObjectMeta().Namespace,
			Labels:          maps.Clone(t.Labels),
			Annotations:     maps.Clone(t.Annotations),
			OwnerReferences: []manifests.OwnerReference{cache.OwnerRef(owner)},
		},
		Spec:   t.Spec,
		Status: manifests.PodStatus{Phase: manifests.PodPending},
	}
	return pod
}

// createSlowStart creates pods in batches of 1, 2, 4... (at most
// createParallel at once), each batch's writes in flight together, and
// stops after the first batch with a failure: a burst of replicas reaches
// the bus at the rate it takes writes, while a template that cannot be
// created fails once, not maxBurst times (Kubernetes' slow start).
func createSlowStart(ctx context.Context, s bus.Store, pods []*manifests.Pod) error {
	for done, batch := 0, 1; done < len(pods); batch = min(batch*2, createParallel) {
		n := min(batch, len(pods)-done)
		err := inParallel(pods[done:done+n], n, func(pod *manifests.Pod) error {
			_, err := cache.CreateObject(ctx, s, pod)
			return err
		})
		if err != nil {
			return err
		}
		done += n
	}
	return nil
}

// createParallel bounds the writes a controller has in flight at once.
const createParallel = 64

// inParallel calls fn on every item, at most limit at a time, and returns
// their errors joined.
func inParallel[T any](items []T, limit int, fn func(T) error) error {
	errs := make([]error, len(items))
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i, it := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(it)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

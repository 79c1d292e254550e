package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/workqueue"
)

// NodeInfo is what the scheduler knows of one node: what it offers and what
// the pods bound to it take.
type NodeInfo struct {
	Name          string
	Ready         bool
	Unschedulable bool
	Labels        map[string]string
	AllocCPU      int64 // millicores
	AllocMem      int64 // bytes
	AllocPods     int64
	UsedCPU       int64
	UsedMem       int64
	Pods          int64
	HostPorts     map[string]int // "tcp/8080" -> pods using it
	idx           int            // its place in the scheduler's order
}

// PodRequest is what a pod asks of a node.
type PodRequest struct {
	CPU, Mem     int64
	HostPorts    []string
	NodeSelector map[string]string
	Owner        string
}

func requestOf(p *manifests.Pod) PodRequest {
	r := PodRequest{NodeSelector: p.Spec.NodeSelector}
	for _, c := range p.Spec.Containers {
		r.CPU += c.Resources.Requests.MilliCPU()
		r.Mem += c.Resources.Requests.MemoryBytes()
		for _, port := range c.Ports {
			if port.HostPort != 0 {
				r.HostPorts = append(r.HostPorts, portKey(port))
			}
		}
	}
	if ref := p.Controller(); ref != nil {
		r.Owner = ref.UID
	}
	return r
}

func portKey(p manifests.ContainerPort) string {
	proto := strings.ToLower(p.Protocol)
	if proto == "" {
		proto = "tcp"
	}
	return fmt.Sprintf("%s/%d", proto, p.HostPort)
}

// Fit reports why the pod does not fit on the node, or "" when it does.
// It is pure: the scheduler's filter.
func Fit(n *NodeInfo, r PodRequest) string {
	switch {
	case !n.Ready:
		return "node not ready"
	case n.Unschedulable:
		return "node unschedulable"
	}
	if len(r.NodeSelector) > 0 { // ranging over even an empty map costs
		for k, v := range r.NodeSelector {
			if n.Labels[k] != v {
				return "node selector mismatch"
			}
		}
	}
	if n.AllocPods > 0 && n.Pods+1 > n.AllocPods {
		return "too many pods"
	}
	if r.CPU > 0 && n.UsedCPU+r.CPU > n.AllocCPU {
		return "insufficient cpu"
	}
	if r.Mem > 0 && n.UsedMem+r.Mem > n.AllocMem {
		return "insufficient memory"
	}
	for _, p := range r.HostPorts {
		if n.HostPorts[p] > 0 {
			return "host port conflict"
		}
	}
	return ""
}

// Score ranks a fitting node for the pod, higher is better: least
// allocated after placing the pod, and fewer pods of the same owner
// (sameOwner, spreading replicas) weighs most. It is pure.
func Score(n *NodeInfo, r PodRequest, sameOwner int) int64 {
	free := func(used, req, alloc int64) int64 {
		if alloc <= 0 {
			return 0
		}
		return (alloc - used - req) * 100 / alloc
	}
	s := (free(n.UsedCPU, r.CPU, n.AllocCPU) + free(n.UsedMem, r.Mem, n.AllocMem)) / 2
	return s - int64(sameOwner)*1000
}

// Scheduler binds pending pods to nodes. Its node accounting is updated
// from the cache's events and from its own binds, so the filter never scans
// every pod.
type Scheduler struct {
	objects bus.Store
	cache   *cache.Cache
	event   func(ctx context.Context, obj manifests.Object, typ, reason, msg string)
	log     *slog.Logger
	mu      sync.Mutex
	nodes   map[string]*NodeInfo
	order   []*NodeInfo // the nodes in the order they came, for choose's rotation
	// spread counts each owner's pods per node, by the node's place in
	// order: choose reads one slice per pod instead of a map lookup by
	// owner uid per node scored (docs/BENCHMARKS.md).
	spread  map[string]*ownerSpread
	next    int // where choose starts its next search in order
	pending workqueue.PeakMap[string, bool]
	// assumed holds the binds decided and not yet seen in the cache: the
	// pod is counted on its node from the decision on. Every other pod is
	// counted from the cache's events alone (account), so the scheduler
	// keeps nothing per bound pod.
	assumed workqueue.PeakMap[string, placement]
	// Binds are written asynchronously, as kube-scheduler's binding
	// cycle: a worker decides and assumes, and the write goes out on its
	// own while the worker takes the next pod. With one write per worker,
	// the rate was the workers over a round trip, and a round trip under
	// a burst is tens of milliseconds (docs/BENCHMARKS.md).
	queue    *workqueue.Queue // the scheduler's, to retry a failed bind
	inflight chan struct{}    // bounds the binds in flight
	binds    sync.WaitGroup
}

// maxBindsInFlight bounds the binds written at once; a worker deciding
// one more waits for a slot.
const maxBindsInFlight = 1024

// ownerSpread is one owner's pods per node (by NodeInfo.idx) and in all.
type ownerSpread struct {
	onNode []int32
	total  int
}

// on is how many of the owner's pods n holds (none for a nil spread).
func (sp *ownerSpread) on(n *NodeInfo) int {
	if sp == nil || n.idx >= len(sp.onNode) {
		return 0
	}
	return int(sp.onNode[n.idx])
}

// sameOwner is how many pods of owner the node holds.
func (s *Scheduler) sameOwner(owner string, n *NodeInfo) int { return s.spread[owner].on(n) }

// addOwner counts delta more pods of owner on n; an owner with none left
// is forgotten.
func (s *Scheduler) addOwner(owner string, n *NodeInfo, delta int) {
	if owner == "" {
		return
	}
	sp := s.spread[owner]
	if sp == nil {
		sp = &ownerSpread{}
		s.spread[owner] = sp
	}
	if n.idx >= len(sp.onNode) {
		sp.onNode = append(sp.onNode, make([]int32, len(s.order)-len(sp.onNode))...)
	}
	sp.onNode[n.idx] += int32(delta)
	if sp.total += delta; sp.total <= 0 {
		delete(s.spread, owner)
	}
}

type placement struct {
	node string
	req  PodRequest
}

// New returns a scheduler that binds pods in objects, reading them from
// c; event records its events (nil drops them).
func New(objects bus.Store, c *cache.Cache, event func(ctx context.Context, obj manifests.Object, typ, reason, msg string), log *slog.Logger) *Scheduler {
	if event == nil {
		event = func(context.Context, manifests.Object, string, string, string) {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{objects: objects, cache: c, event: event, log: log, nodes: map[string]*NodeInfo{}, spread: map[string]*ownerSpread{},
		inflight: make(chan struct{}, maxBindsInFlight), queue: workqueue.New()}
}

// Queue is the scheduler's work queue: pending pods' keys.
func (s *Scheduler) Queue() *workqueue.Queue { return s.queue }

// Wait waits for the binds in flight.
func (s *Scheduler) Wait() { s.binds.Wait() }

func (s *Scheduler) node(name string) *NodeInfo {
	n := s.nodes[name]
	if n == nil {
		n = &NodeInfo{Name: name, HostPorts: map[string]int{}, idx: len(s.order)}
		s.nodes[name] = n
		s.order = append(s.order, n)
	}
	return n
}

// counted is the node a pod's request counts on: its own while bound and
// not finished, none otherwise.
func counted(p *manifests.Pod) string {
	if p == nil || manifests.IsPodTerminal(p) {
		return ""
	}
	return p.Spec.NodeName
}

// account moves a pod's request from where old counted it to where cur
// does, as the cache tells of the change. A pod whose bind is assumed
// counts where it was assumed until the cache shows it bound there, or
// bound elsewhere, finished or gone.
func (s *Scheduler) account(key string, old, cur *manifests.Pod) {
	from, to := counted(old), counted(cur)
	if a, ok := s.assumed.Get(key); ok {
		switch {
		case to == a.node && sameRequest(a.req, requestOf(cur)):
			s.assumed.Del(key) // landed: counted since the decision
			return
		case to == "" && cur != nil && !manifests.IsPodTerminal(cur):
			return // still pending in the cache: the bind is on its way
		}
		s.assumed.Del(key)
		s.unplace(a.node, a.req)
	}
	if from == to && (from == "" || sameSpecRequest(old, cur)) {
		return
	}
	if from != "" {
		s.unplace(from, requestOf(old))
	}
	if to != "" {
		s.place(to, requestOf(cur))
	}
}

// sameSpecRequest reports whether pods a and b ask the same. Most
// versions of a pod share its containers (a status written is a shallow
// copy; the cache shares a decoded pod's containers with its owner's
// other pods), and then only the owner can differ: requestOf parses
// every quantity, and a pod's status changes several times.
func sameSpecRequest(a, b *manifests.Pod) bool {
	if len(a.Spec.Containers) > 0 && len(a.Spec.Containers) == len(b.Spec.Containers) && &a.Spec.Containers[0] == &b.Spec.Containers[0] {
		ra, rb := a.Controller(), b.Controller()
		return (ra == nil) == (rb == nil) && (ra == nil || ra.UID == rb.UID)
	}
	return sameRequest(requestOf(a), requestOf(b))
}

// sameRequest reports whether a and b take the same room and spread.
func sameRequest(a, b PodRequest) bool {
	return a.CPU == b.CPU && a.Mem == b.Mem && a.Owner == b.Owner && slices.Equal(a.HostPorts, b.HostPorts)
}

// place counts r on node.
func (s *Scheduler) place(node string, r PodRequest) {
	n := s.node(node)
	n.UsedCPU += r.CPU
	n.UsedMem += r.Mem
	n.Pods++
	for _, p := range r.HostPorts {
		n.HostPorts[p]++
	}
	s.addOwner(r.Owner, n, 1)
}

// unplace takes r off node.
func (s *Scheduler) unplace(node string, r PodRequest) {
	n := s.node(node)
	n.UsedCPU -= r.CPU
	n.UsedMem -= r.Mem
	n.Pods--
	for _, p := range r.HostPorts {
		if n.HostPorts[p]--; n.HostPorts[p] <= 0 {
			delete(n.HostPorts, p)
		}
	}
	s.addOwner(r.Owner, n, -1)
}

func (s *Scheduler) OnObject(q *workqueue.Queue) cache.Handler {
	return func(key string, old, cur manifests.Object) {
		if (cur != nil && cur.GetTypeMeta().Kind != "Pod") || (cur == nil && old.GetTypeMeta().Kind != "Pod") {
			return
		}
		var pod, was *manifests.Pod
		if cur != nil {
			pod = cur.(*manifests.Pod)
		}
		if old != nil {
			was = old.(*manifests.Pod)
		}
		s.mu.Lock()
		s.account(key, was, pod)
		if pod != nil && pod.Spec.NodeName == "" && !manifests.IsPodTerminal(pod) && pod.DeletionTimestamp == nil {
			s.pending.Set(key, true)
			s.mu.Unlock()
			q.Add(key)
			return
		}
		s.pending.Del(key)
		s.mu.Unlock()
	}
}

func (s *Scheduler) OnNode(q *workqueue.Queue) cache.Handler {
	return func(key string, old, cur manifests.Object) {
		s.mu.Lock()
		if cur == nil {
			n := s.node(old.GetObjectMeta().Name)
			n.Ready = false
		} else {
			node := cur.(*manifests.Node)
			n := s.node(node.Name)
			wasReady := n.Ready
			n.Ready = manifests.IsNodeReady(node)
			n.Unschedulable = node.Spec.Unschedulable
			n.Labels = node.Labels
			n.AllocCPU = node.Status.Allocatable.MilliCPU()
			n.AllocMem = node.Status.Allocatable.MemoryBytes()
			if q, ok := node.Status.Allocatable["pods"]; ok {
				n.AllocPods, _ = q.Value()
			}
			if n.Ready == wasReady {
				s.mu.Unlock()
				return
			}
		}
		s.mu.Unlock()
		// A node that came or went may make room for pending pods.
		for _, k := range s.PendingKeys(func(string) bool { return true }) {
			q.Add(k)
		}
	}
}

func (s *Scheduler) PendingKeys(keep func(string) bool) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.pending.Keys() {
		if keep(k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// choose picks the best node for r, or explains why none fits. Like
// kube-scheduler, it stops looking once it has found enough feasible
// nodes (feasibleToFind) and starts the next search after the node this
// one chose, so in a large cluster every pod costs a fraction of the nodes
// and every node is considered in turn.
func (s *Scheduler) choose(r PodRequest) (string, string) {
	best, bestScore := "", int64(0)
	reasons := map[string]int{}
	want, found, at := feasibleToFind(len(s.order)), 0, 0
	same := s.spread[r.Owner] // looked up once, not per node
	for i := range s.order {
		n := s.order[(s.next+i)%len(s.order)]
		if why := Fit(n, r); why != "" {
			reasons[why]++
			continue
		}
		// Ties go to the first in the search, which starts after the
		// last node chosen: equal nodes take pods in turn.
		if sc := Score(n, r, same.on(n)); best == "" || sc > bestScore {
			best, bestScore, at = n.Name, sc, i
		}
		if found++; found == want {
			break
		}
	}
	if best != "" {
		s.next = (s.next + at + 1) % len(s.order)
	}
	if best != "" {
		return best, ""
	}
	if len(s.nodes) == 0 {
		return "", "0/0 nodes are available: no node has registered"
	}
	parts := make([]string, 0, len(reasons))
	for why, n := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, why))
	}
	sort.Strings(parts)
	return "", fmt.Sprintf("0/%d nodes are available: %s", len(s.nodes), strings.Join(parts, ", "))
}

// feasibleToFind is how many fitting nodes choose scores out of n, as
// kube-scheduler's adaptive percentageOfNodesToScore: every node up to
// 100, then 50 % less 1 % per 125 nodes (at least 5 %), and never fewer
// than 100.
func feasibleToFind(n int) int {
	if n <= 100 {
		return n
	}
	pct := max(5, 50-n/125)
	return max(100, n*pct/100)
}

// ErrUnschedulable marks a pod no node fits; it is retried, not logged.
var ErrUnschedulable = errors.New("unschedulable")

func (s *Scheduler) Reconcile(ctx context.Context, key string) error {
	c, ok := s.cache.Get(key)
	if !ok {
		return nil
	}
	pod := c.Obj.(*manifests.Pod)
	if pod.Spec.NodeName != "" || manifests.IsPodTerminal(pod) || pod.DeletionTimestamp != nil {
		return nil
	}
	r := requestOf(pod)
	s.mu.Lock()
	if _, ok := s.assumed.Get(key); ok {
		s.mu.Unlock()
		return nil // on its way; a failure queues it again
	}
	node, why := s.choose(r)
	if node != "" {
		// Assume the bind so the next pod sees the room taken.
		s.place(node, r)
		s.assumed.Set(key, placement{node: node, req: r})
	}
	s.mu.Unlock()

	// A shallow copy: only the node name and a fresh conditions slice
	// change, and the copy is only encoded (a JSON clone costs as much
	// as the write).
	upd := *pod
	upd.Status.Conditions = slices.Clone(pod.Status.Conditions)
	if node == "" {
		cond := manifests.Condition{Type: "PodScheduled", Status: manifests.ConditionFalse, Reason: "Unschedulable", Message: why}
		if old := manifests.FindCondition(pod.Status.Conditions, "PodScheduled"); old == nil || old.Message != why {
			upd.Status.Conditions = manifests.SetCondition(upd.Status.Conditions, cond)
			if _, err := cache.UpdateObject(ctx, s.objects, &upd, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
				return err
			}
			s.event(ctx, pod, "Warning", "FailedScheduling", why)
		}
		// Retried with back-off, and at once when a node changes.
		return fmt.Errorf("pod %s: %w: %s", key, ErrUnschedulable, why)
	}
	upd.Spec.NodeName = node
	upd.Status.Conditions = manifests.SetCondition(upd.Status.Conditions, manifests.Condition{Type: "PodScheduled", Status: manifests.ConditionTrue})
	select {
	case s.inflight <- struct{}{}:
	case <-ctx.Done():
		s.bound(key, node, ctx.Err())
		return nil
	}
	s.binds.Go(func() {
		defer func() { <-s.inflight }()
		// The cache takes upd back as it is, not decoded again.
		_, err := cache.UpdateEchoed(ctx, s.objects, s.cache, &upd, c.Rev)
		s.bound(key, node, err)
		switch {
		case err == nil:
			s.event(ctx, pod, "Normal", "Scheduled", fmt.Sprintf("Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node))
		case errors.Is(err, bus.ErrNotFound) || ctx.Err() != nil:
		default:
			// A conflict (the pod changed meanwhile) or a bus error: tried
			// again, from the newer pod, after the queue's back-off.
			if !errors.Is(err, bus.ErrConflict) {
				s.log.Warn("bind failed", "pod", key, "node", node, "err", err)
			}
			s.queue.Retry(key)
		}
	})
	return nil
}

// bound ends the bind of key to node: on failure the assumption is
// undone (the node's room given back) until the pod is scheduled again.
// On success the cache's event ends it (account).
func (s *Scheduler) bound(key, node string, err error) {
	if err == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.assumed.Get(key); ok && a.node == node {
		s.assumed.Del(key)
		s.unplace(a.node, a.req)
	}
}

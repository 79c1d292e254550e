package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// DaemonPlacement says whether a DaemonSet's pod belongs on a node.
type DaemonPlacement int

// Daemon placements.
const (
	// DaemonNone: the node must not run the pod (gone, not matching the
	// selector, or not ready past the eviction timeout).
	DaemonNone DaemonPlacement = iota
	// DaemonKeep: a pod there stays, but none is made (the node is
	// briefly not ready, or cordoned).
	DaemonKeep
	// DaemonRun: the node runs one pod.
	DaemonRun
)

// DaemonPod is what PlanDaemonSet needs to know of one pod.
type DaemonPod struct {
	Name        string
	Revision    string
	Ready       bool // Running and Ready
	Available   bool // Ready for at least minReadySeconds
	Terminating bool
	Failed      bool
	Created     int64 // unix seconds: the oldest of duplicates is kept
}

// DaemonNode is one node, or a node name pods still point at.
type DaemonNode struct {
	Name      string
	Placement DaemonPlacement
	Pods      []DaemonPod
}

// DaemonSetState is the input of PlanDaemonSet.
type DaemonSetState struct {
	UpdateRevision string
	OnDelete       bool
	// MaxUnavailable bounds the nodes without an available pod that a
	// rolling update may cause (at least 1).
	MaxUnavailable int
	Nodes          []DaemonNode
}

// DaemonAction creates a pod on a node or deletes one.
type DaemonAction struct {
	Create bool
	Node   string
	Pod    string // of a deletion
	Reason string
}

// PlanDaemonSet returns what a DaemonSet should do next: a pod on every
// node placed Run that has none (none is made while one is terminating), the
// pods of nodes placed None deleted, failed pods and duplicates deleted,
// and a rolling update that deletes outdated pods (unavailable ones first,
// then available ones while fewer than MaxUnavailable nodes lack an
// available pod) for the creation step to replace. It is pure.
func PlanDaemonSet(s DaemonSetState) []DaemonAction {
	maxUnavailable := max(s.MaxUnavailable, 1)
	var acts []DaemonAction
	del := func(node, pod, why string) {
		acts = append(acts, DaemonAction{Node: node, Pod: pod, Reason: why})
	}
	nodes := slices.Clone(s.Nodes)
	slices.SortFunc(nodes, func(a, b DaemonNode) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	type kept struct {
		node string
		pod  DaemonPod
	}
	var olds []kept
	unavailable := 0
	for _, n := range nodes {
		var live []DaemonPod
		terminating := false
		for _, p := range n.Pods {
			switch {
			case p.Terminating:
				terminating = true
			case n.Placement == DaemonNone:
				del(n.Name, p.Name, "node not eligible")
			case p.Failed:
				del(n.Name, p.Name, "failed")
				terminating = true
			default:
				live = append(live, p)
			}
		}
		if n.Placement == DaemonNone {
			continue
		}
		if len(live) == 0 {
			// A kept node without a pod is owed none: it counts for
			// nothing.
			if n.Placement == DaemonRun {
				unavailable++
				if !terminating {
					acts = append(acts, DaemonAction{Create: true, Node: n.Name})
				}
			}
			continue
		}
		// Keep one: the updated and available first, then the oldest.
		slices.SortFunc(live, func(a, b DaemonPod) int {
			ka, kb := daemonKeepRank(a, s.UpdateRevision), daemonKeepRank(b, s.UpdateRevision)
			if ka != kb {
				return kb - ka
			}
			if a.Created != b.Created {
				return int(a.Created - b.Created)
			}
			if a.Name < b.Name {
				return -1
			}
			return 1
		})
		for _, p := range live[1:] {
			del(n.Name, p.Name, "excess")
		}
		if !live[0].Available {
			unavailable++
		}
		// A kept node would get no replacement: it is updated once it
		// is back.
		if live[0].Revision != s.UpdateRevision && n.Placement == DaemonRun {
			olds = append(olds, kept{n.Name, live[0]})
		}
	}
	if s.OnDelete {
		return acts
	}
	// Outdated pods that are not available cost nothing to replace.
	for _, o := range olds {
		if !o.pod.Available {
			del(o.node, o.pod.Name, "update")
		}
	}
	for _, o := range olds {
		if o.pod.Available && unavailable < maxUnavailable {
			del(o.node, o.pod.Name, "update")
			unavailable++
		}
	}
	return acts
}

func daemonKeepRank(p DaemonPod, rev string) int {
	r := 0
	if p.Revision == rev {
		r += 2
	}
	if p.Available {
		r++
	}
	return r
}

// daemonPlacement places a DaemonSet's pod on a node, and says when the
// placement changes by itself (a NotReady node's eviction timeout).
func (ctl *daemonSetController) daemonPlacement(ds *manifests.DaemonSet, n *manifests.Node, now time.Time) (DaemonPlacement, time.Duration) {
	for k, v := range ds.Spec.Template.Spec.NodeSelector {
		if n.Labels[k] != v {
			return DaemonNone, 0
		}
	}
	ready := manifests.FindCondition(n.Status.Conditions, "Ready")
	switch {
	case ready == nil:
		return DaemonNone, 0
	case ready.Status == manifests.ConditionTrue && n.Spec.Unschedulable:
		return DaemonKeep, 0
	case ready.Status == manifests.ConditionTrue:
		return DaemonRun, 0
	}
	var since time.Time
	if ready.LastTransitionTime != nil {
		since = ready.LastTransitionTime.Time
	}
	if left := ctl.evictionTimeout - now.Sub(since); left > 0 {
		return DaemonKeep, left
	}
	return DaemonNone, 0
}

// register routes the controller its events: those of its kind and of
// the pods DaemonSets control, and those of nodes (onNode).
func (ctl *daemonSetController) register(objects, nodes *cache.Cache) {
	ctl.queued.register(objects, nodes)
	nodes.AddHandler(ctl.onNode)
}

// onNode queues every DaemonSet when a node comes, goes, or
// changes what placement reads (readiness, labels, cordon): heartbeats
// alone queue nothing.
func (ctl *daemonSetController) onNode(_ string, old, cur manifests.Object) {
	if old != nil && cur != nil {
		o, c := old.(*manifests.Node), cur.(*manifests.Node)
		if manifests.IsNodeReady(o) == manifests.IsNodeReady(c) && o.Spec.Unschedulable == c.Spec.Unschedulable &&
			manifests.Hash(o.Labels) == manifests.Hash(c.Labels) {
			return
		}
	}
	for _, k := range ctl.keysOf("DaemonSet")(all) {
		ctl.queue.Add(k)
	}
}

// daemonSetController keeps a DaemonSet's pod on each node it places one.
type daemonSetController struct {
	queued
	// evictionTimeout is how long a NotReady node keeps its daemon pod
	// (ControlPlane.PodEvictionTimeout).
	evictionTimeout time.Duration
}

func newDaemonSetController(sh *shared, evictionTimeout time.Duration) *daemonSetController {
	return &daemonSetController{queued: newQueued(sh, "DaemonSet"), evictionTimeout: evictionTimeout}
}

func (ctl *daemonSetController) reconcile(ctx context.Context, key string) error {
	c, ok := ctl.objects.Get(key)
	if !ok {
		return nil // its pods are garbage-collected
	}
	if !ctl.exp.satisfied(key, ctl.objects) {
		return nil
	}
	ds := c.Obj.(*manifests.DaemonSet)
	rev := TemplateHash(&ds.Spec.Template)
	now := time.Now()
	minReady := time.Duration(ds.Spec.MinReadySeconds) * time.Second

	byNode := map[string]*DaemonNode{}
	byHostname := map[string]string{}
	var nodeNames []string
	var wake time.Duration
	for _, nc := range ctl.nodes.List("Node", "") {
		n := nc.Obj.(*manifests.Node)
		pl, after := ctl.daemonPlacement(ds, n, now)
		if after > 0 && (wake == 0 || after < wake) {
			wake = after
		}
		byNode[n.Name] = &DaemonNode{Name: n.Name, Placement: pl}
		nodeNames = append(nodeNames, n.Name)
		byHostname[hostnameOf(n)] = n.Name
	}
	if wake > 0 {
		ctl.requeue("DaemonSet", key, wake+100*time.Millisecond)
	}
	pods := map[string]*manifests.Pod{}
	requeue := false
	for _, p := range ctl.podsOwnedBy(ds) {
		pod := p.Obj.(*manifests.Pod)
		nodeName := pod.Spec.NodeName
		if nodeName == "" {
			h := pod.Spec.NodeSelector[LabelHostname]
			if nodeName = byHostname[h]; nodeName == "" {
				nodeName = h
			}
		}
		dn := byNode[nodeName]
		if dn == nil {
			dn = &DaemonNode{Name: nodeName, Placement: DaemonNone} // a node that is gone
			byNode[nodeName] = dn
			nodeNames = append(nodeNames, nodeName)
		}
		avail := isRunningAndReady(pod) && manifests.IsPodAvailable(pod, minReady, now)
		if isRunningAndReady(pod) && !avail {
			requeue = true
		}
		var created int64
		if pod.CreationTimestamp != nil {
			created = pod.CreationTimestamp.Unix()
		}
		dn.Pods = append(dn.Pods, DaemonPod{Name: pod.Name, Revision: pod.Labels[LabelControllerRevisionHash], Ready: isRunningAndReady(pod), Available: avail,
			Terminating: pod.DeletionTimestamp != nil, Failed: manifests.IsPodTerminal(pod), Created: created})
		pods[pod.Name] = pod
	}
	if requeue {
		ctl.requeue("DaemonSet", key, minReady)
	}
	state := DaemonSetState{UpdateRevision: rev, OnDelete: ds.Spec.UpdateStrategy.Type == "OnDelete", MaxUnavailable: 1}
	for _, name := range nodeNames {
		state.Nodes = append(state.Nodes, *byNode[name])
	}
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		desired := 0
		for _, n := range state.Nodes {
			if n.Placement != DaemonNone {
				desired++
			}
		}
		mu, err := ru.MaxUnavailable.Scaled(int32(desired), true)
		if err != nil {
			return fmt.Errorf("daemonset %s: maxUnavailable: %w", key, err)
		}
		state.MaxUnavailable = int(mu)
	}
	acts := PlanDaemonSet(state)
	if err := ctl.applyDaemonActions(ctx, key, ds, rev, acts, byNode); err != nil {
		return err
	}
	if len(acts) > 0 {
		return nil
	}
	return ctl.updateDaemonSetStatus(ctx, c, ds, state)
}

// hostnameOf is the node's kubernetes.io/hostname label, which the node
// daemon sets to the node's name.
func hostnameOf(n *manifests.Node) string {
	if h := n.Labels[LabelHostname]; h != "" {
		return h
	}
	return n.Name
}

func (ctl *daemonSetController) applyDaemonActions(ctx context.Context, key string, ds *manifests.DaemonSet, rev string, acts []DaemonAction, nodes map[string]*DaemonNode) error {
	var adds, dels []string
	var pods []*manifests.Pod
	for _, a := range acts {
		if !a.Create {
			dels = append(dels, manifests.Key("Pod", ds.Namespace, a.Pod))
			continue
		}
		host := a.Node
		if nc, ok := ctl.nodes.Get(a.Node); ok {
			host = hostnameOf(nc.Obj.(*manifests.Node))
		}
		pod := podFromTemplate(ds, &ds.Spec.Template, ds.Name+"-"+cache.RandomSuffix(5))
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		pod.Labels[LabelControllerRevisionHash] = rev
		// The scheduler binds it to its node like any pod (resources,
		// host ports and a reason when it cannot), as Kubernetes does with
		// node affinity.
		if pod.Spec.NodeSelector == nil {
			pod.Spec.NodeSelector = map[string]string{}
		}
		pod.Spec.NodeSelector[LabelHostname] = host
		pods = append(pods, pod)
		adds = append(adds, manifests.KeyOf(pod))
	}
	ctl.exp.expect(key, adds, dels)
	for _, a := range acts {
		if a.Create {
			continue
		}
		if err := DeleteGracefully(ctx, ctl.store, manifests.Key("Pod", ds.Namespace, a.Pod), 0); err != nil && !errors.Is(err, bus.ErrNotFound) {
			ctl.exp.expect(key, nil, nil)
			return fmt.Errorf("daemonset %s: %w", key, err)
		}
		ctl.event(ctx, ds, "Normal", "SuccessfulDelete", fmt.Sprintf("Deleted pod: %s on node %s (%s)", a.Pod, a.Node, a.Reason))
	}
	for _, pod := range pods {
		if _, err := cache.CreateObject(ctx, ctl.store, pod); err != nil {
			ctl.exp.expect(key, nil, nil)
			return fmt.Errorf("daemonset %s: %w", key, err)
		}
		ctl.event(ctx, ds, "Normal", "SuccessfulCreate", fmt.Sprintf("Created pod: %s for node %s", pod.Name, pod.Spec.NodeSelector[LabelHostname]))
	}
	return nil
}

func (ctl *daemonSetController) updateDaemonSetStatus(ctx context.Context, c *cache.Cached, ds *manifests.DaemonSet, s DaemonSetState) error {
	st := manifests.DaemonSetStatus{ObservedGeneration: ds.Generation}
	for _, n := range s.Nodes {
		if n.Placement == DaemonNone {
			st.NumberMisscheduled += int32(len(n.Pods))
			continue
		}
		var scheduled, updated, ready, available bool
		for _, p := range n.Pods {
			if p.Terminating || p.Failed {
				continue
			}
			scheduled = true
			updated = updated || p.Revision == s.UpdateRevision
			ready = ready || p.Ready
			available = available || p.Available
		}
		if n.Placement == DaemonKeep && !scheduled {
			continue // a cordoned or briefly lost node gets no new pod
		}
		st.DesiredNumberScheduled++
		st.CurrentNumberScheduled += b2i(scheduled)
		st.UpdatedNumberScheduled += b2i(updated)
		st.NumberReady += b2i(ready)
		st.NumberAvailable += b2i(available)
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	if st == ds.Status {
		return nil
	}
	upd := cache.Clone(ds)
	upd.Status = st
	if _, err := cache.UpdateObject(ctx, ctl.store, upd, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
		return err
	}
	return nil
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// Labels and annotations of the pods StatefulSets and DaemonSets make.
const (
	// LabelControllerRevisionHash names the template revision a pod was
	// made from: <statefulset>-<hash> for StatefulSets, <hash> for
	// DaemonSets, as in Kubernetes.
	LabelControllerRevisionHash = "controller-revision-hash"
	// LabelStatefulSetPodName is a StatefulSet pod's own name, so a
	// Service can select one pod.
	LabelStatefulSetPodName = "statefulset.kubernetes.io/pod-name"
	// LabelPodIndex is a StatefulSet pod's ordinal.
	LabelPodIndex = "apps.kubernetes.io/pod-index"
	// LabelHostname is the node label every node carries with its name;
	// DaemonSet pods and StatefulSet pods pinned to their claims select
	// their node with it.
	LabelHostname = "kubernetes.io/hostname"
	// AnnotationClaimNode marks a pod pinned by the StatefulSet
	// controller to the node its volume claims live on.
	AnnotationClaimNode = "capstan.io/claim-node"
)

// StatefulPod is what PlanStatefulSet needs to know of one pod.
type StatefulPod struct {
	Ordinal     int
	Revision    string
	Ready       bool // Running and Ready
	Available   bool // Ready for at least minReadySeconds
	Terminating bool // being deleted
	Failed      bool // Succeeded or Failed: it is replaced
}

// StatefulSetState is the input of PlanStatefulSet.
type StatefulSetState struct {
	Replicas int
	// Parallel is the Parallel pod management policy; otherwise
	// OrderedReady.
	Parallel bool
	// OnDelete is the OnDelete update strategy; otherwise RollingUpdate.
	OnDelete bool
	// Partition: a rolling update touches only ordinals at or above it,
	// and a pod below it is recreated at CurrentRevision.
	Partition       int
	CurrentRevision string
	UpdateRevision  string
	Pods            []StatefulPod
}

// StatefulAction is one step for a StatefulSet: create the pod of an
// ordinal at a revision, or delete it.
type StatefulAction struct {
	Create   bool
	Ordinal  int
	Revision string // of a created pod
	Reason   string // of a deletion: failed, scale down, update
}

// PlanStatefulSet returns what a StatefulSet should do next, as the
// Kubernetes controller does:
//
//   - Missing ordinals below Replicas are created; failed pods are deleted
//     (and recreated by a later step). Under OrderedReady one thing happens
//     at a time in ordinal order: ordinal N+1 is made only once 0..N are
//     Running and Ready.
//   - Ordinals at or above Replicas are deleted highest first; under
//     OrderedReady only once every lower pod is healthy, and one at a
//     time, waiting for each to go. Parallel deletes them all at once.
//   - A rolling update deletes the highest pod at or above Partition that
//     is not at UpdateRevision, one at a time, and only once every pod
//     above it is updated and available; its replacement is made at the
//     new revision by the creation step. OnDelete leaves that to the user.
//
// It is pure.
func PlanStatefulSet(s StatefulSetState) []StatefulAction {
	pods := make(map[int]StatefulPod, len(s.Pods))
	for _, p := range s.Pods {
		pods[p.Ordinal] = p
	}
	monotonic := !s.Parallel
	var acts []StatefulAction
	deleted := map[int]bool{}
	del := func(ord int, why string) {
		acts = append(acts, StatefulAction{Ordinal: ord, Reason: why})
		deleted[ord] = true
	}
	revisionFor := func(ord int) string {
		if !s.OnDelete && ord < s.Partition && s.CurrentRevision != "" {
			return s.CurrentRevision
		}
		return s.UpdateRevision
	}

	for ord := range s.Replicas {
		p, ok := pods[ord]
		switch {
		case !ok:
			acts = append(acts, StatefulAction{Create: true, Ordinal: ord, Revision: revisionFor(ord)})
			if monotonic {
				return acts
			}
		case p.Terminating:
			if monotonic {
				return acts
			}
		case p.Failed:
			del(ord, "failed")
			if monotonic {
				return acts
			}
		case !p.Ready:
			if monotonic {
				return acts
			}
		}
	}

	var condemned []int
	for ord := range pods {
		if ord >= s.Replicas {
			condemned = append(condemned, ord)
		}
	}
	slices.Sort(condemned)
	for i := len(condemned) - 1; i >= 0; i-- {
		ord := condemned[i]
		p := pods[ord]
		if p.Terminating {
			if monotonic {
				return acts
			}
			continue
		}
		if monotonic && !p.Ready && !p.Failed {
			// Only the lowest unhealthy pod may go while unhealthy; a
			// failed one is gone already and holds nothing up.
			for _, lower := range condemned[:i] {
				if q := pods[lower]; (!q.Ready && !q.Failed) || q.Terminating {
					return acts
				}
			}
		}
		del(ord, "scale down")
		if monotonic {
			return acts
		}
	}

	if s.OnDelete {
		return acts
	}
	for ord := s.Replicas - 1; ord >= max(s.Partition, 0); ord-- {
		p, ok := pods[ord]
		if !ok || deleted[ord] {
			return acts
		}
		if p.Revision != s.UpdateRevision && !p.Terminating {
			del(ord, "update")
			return acts
		}
		if !p.Available || p.Terminating {
			return acts
		}
	}
	return acts
}

// statefulOrdinal parses the ordinal of a StatefulSet's pod from its name.
func statefulOrdinal(set, pod string) (int, bool) {
	rest, ok := strings.CutPrefix(pod, set+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

// statefulRevision is the revision of a StatefulSet's template, as the
// controller-revision-hash label holds it.
func statefulRevision(sts *manifests.StatefulSet) string {
	return sts.Name + "-" + TemplateHash(&sts.Spec.Template)
}

func isRunningAndReady(p *manifests.Pod) bool {
	return p.Status.Phase == manifests.PodRunning && manifests.IsPodReady(p)
}

// statefulSetController keeps StatefulSets' ordered, named pods.
type statefulSetController struct{ queued }

func newStatefulSetController(sh *shared) *statefulSetController {
	return &statefulSetController{newQueued(sh, "StatefulSet")}
}

func (ctl *statefulSetController) reconcile(ctx context.Context, key string) error {
	c, ok := ctl.objects.Get(key)
	if !ok {
		return nil // its pods are garbage-collected; claims stay on their nodes
	}
	if !ctl.exp.satisfied(key, ctl.objects) {
		return nil // the pod events will queue it again
	}
	sts := c.Obj.(*manifests.StatefulSet)
	updateRev := statefulRevision(sts)
	currentRev := sts.Status.CurrentRevision
	if currentRev == "" {
		currentRev = updateRev
	}
	byOrdinal := map[int]*manifests.Pod{}
	for _, p := range ctl.podsOwnedBy(sts) {
		pod := p.Obj.(*manifests.Pod)
		if ord, ok := statefulOrdinal(sts.Name, pod.Name); ok {
			byOrdinal[ord] = pod
		}
	}

	// Record where each pod's claims live before anything else, so a
	// replacement made by a later step goes back to them.
	claimNodes := maps.Clone(sts.Status.ClaimNodes)
	if len(sts.Spec.VolumeClaimTemplates) > 0 {
		for _, pod := range byOrdinal {
			if pod.Spec.NodeName != "" && claimNodes[pod.Name] != pod.Spec.NodeName {
				if claimNodes == nil {
					claimNodes = map[string]string{}
				}
				claimNodes[pod.Name] = pod.Spec.NodeName
			}
		}
	}
	if !maps.Equal(claimNodes, sts.Status.ClaimNodes) {
		upd := cache.Clone(sts)
		upd.Status.ClaimNodes = claimNodes
		if _, err := cache.UpdateObject(ctx, ctl.store, upd, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
			return err
		}
		return nil // our own write queues the next step
	}

	// The template of the current revision is the one running: rebuilt
	// from a pod of that revision (Kubernetes keeps ControllerRevisions;
	// Capstan has no such kind). Without one, pods are made at the update
	// revision.
	templates := map[string]*manifests.PodTemplateSpec{updateRev: &sts.Spec.Template}
	if currentRev != updateRev {
		for _, pod := range byOrdinal {
			if pod.Labels[LabelControllerRevisionHash] == currentRev {
				templates[currentRev] = templateFromStatefulPod(sts, pod)
				break
			}
		}
	}
	state := StatefulSetState{
		Replicas:       int(manifests.Int32(sts.Spec.Replicas, 1)),
		Parallel:       sts.Spec.PodManagementPolicy == manifests.ParallelPodManagement,
		OnDelete:       sts.Spec.UpdateStrategy.Type == "OnDelete",
		UpdateRevision: updateRev,
	}
	if templates[currentRev] != nil {
		state.CurrentRevision = currentRev
	}
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		state.Partition = int(manifests.Int32(ru.Partition, 0))
	}
	now := time.Now()
	minReady := time.Duration(sts.Spec.MinReadySeconds) * time.Second
	for ord, pod := range byOrdinal {
		state.Pods = append(state.Pods, StatefulPod{
			Ordinal: ord, Revision: pod.Labels[LabelControllerRevisionHash],
			Ready:       isRunningAndReady(pod),
			Available:   isRunningAndReady(pod) && manifests.IsPodAvailable(pod, minReady, now),
			Terminating: pod.DeletionTimestamp != nil, Failed: manifests.IsPodTerminal(pod),
		})
	}
	acts := PlanStatefulSet(state)
	if err := ctl.applyStatefulActions(ctx, key, sts, acts, templates); err != nil {
		return err
	}
	if len(acts) > 0 {
		return nil // the pod events queue the status
	}
	return ctl.updateStatefulSetStatus(ctx, c, sts, byOrdinal, currentRev, updateRev)
}

func (ctl *statefulSetController) applyStatefulActions(ctx context.Context, key string, sts *manifests.StatefulSet, acts []StatefulAction, templates map[string]*manifests.PodTemplateSpec) error {
	var adds, dels []string
	var pods []*manifests.Pod
	for _, a := range acts {
		pk := manifests.Key("Pod", sts.Namespace, fmt.Sprintf("%s-%d", sts.Name, a.Ordinal))
		if a.Create {
			pod := statefulPod(sts, templates[a.Revision], a.Ordinal, a.Revision)
			if n := pod.Annotations[AnnotationClaimNode]; n != "" {
				if nc, ok := ctl.nodes.Get(n); ok {
					pod.Spec.NodeSelector[LabelHostname] = hostnameOf(nc.Obj.(*manifests.Node))
				}
			}
			pods = append(pods, pod)
			adds = append(adds, pk)
		} else {
			dels = append(dels, pk)
		}
	}
	ctl.exp.expect(key, adds, dels)
	for _, a := range acts {
		if a.Create {
			continue
		}
		name := fmt.Sprintf("%s-%d", sts.Name, a.Ordinal)
		if err := DeleteGracefully(ctx, ctl.store, manifests.Key("Pod", sts.Namespace, name), 0); err != nil && !errors.Is(err, bus.ErrNotFound) {
			ctl.exp.expect(key, nil, nil)
			return fmt.Errorf("statefulset %s: %w", key, err)
		}
		ctl.event(ctx, sts, "Normal", "SuccessfulDelete", fmt.Sprintf("delete Pod %s in StatefulSet %s successful (%s)", name, sts.Name, a.Reason))
	}
	for _, pod := range pods {
		if _, err := cache.CreateObject(ctx, ctl.store, pod); err != nil {
			ctl.exp.expect(key, nil, nil)
			return fmt.Errorf("statefulset %s: %w", key, err)
		}
		msg := fmt.Sprintf("create Pod %s in StatefulSet %s successful", pod.Name, sts.Name)
		if n := pod.Annotations[AnnotationClaimNode]; n != "" {
			msg += " (pinned to node " + n + ", where its claims live)"
		}
		ctl.event(ctx, sts, "Normal", "SuccessfulCreate", msg)
	}
	return nil
}

// statefulPod makes the pod of one ordinal: a stable name and hostname,
// the governing service's subdomain, one persistentVolumeClaim volume per
// claim template (<template>-<pod>), and, once its claims exist on a node,
// a node selector that brings it back there.
func statefulPod(sts *manifests.StatefulSet, tmpl *manifests.PodTemplateSpec, ord int, rev string) *manifests.Pod {
	name := fmt.Sprintf("%s-%d", sts.Name, ord)
	pod := podFromTemplate(sts, tmpl, name)
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[LabelControllerRevisionHash] = rev
	pod.Labels[LabelStatefulSetPodName] = name
	pod.Labels[LabelPodIndex] = strconv.Itoa(ord)
	pod.Spec.Hostname = name
	pod.Spec.Subdomain = sts.Spec.ServiceName
	pod.Spec.NodeName = ""
	for _, ct := range sts.Spec.VolumeClaimTemplates {
		v := manifests.Volume{Name: ct.Name, VolumeSource: manifests.VolumeSource{
			PersistentVolumeClaim: &manifests.PersistentVolumeClaimVolumeSource{ClaimName: ct.Name + "-" + name}}}
		if i := slices.IndexFunc(pod.Spec.Volumes, func(x manifests.Volume) bool { return x.Name == ct.Name }); i >= 0 {
			pod.Spec.Volumes[i] = v
		} else {
			pod.Spec.Volumes = append(pod.Spec.Volumes, v)
		}
	}
	if node := sts.Status.ClaimNodes[name]; node != "" && len(sts.Spec.VolumeClaimTemplates) > 0 {
		if _, fixed := pod.Spec.NodeSelector[LabelHostname]; !fixed {
			if pod.Spec.NodeSelector == nil {
				pod.Spec.NodeSelector = map[string]string{}
			}
			pod.Spec.NodeSelector[LabelHostname] = node
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[AnnotationClaimNode] = node
		}
	}
	return pod
}

// templateFromStatefulPod undoes what statefulPod adds to a template.
func templateFromStatefulPod(sts *manifests.StatefulSet, pod *manifests.Pod) *manifests.PodTemplateSpec {
	p := cache.Clone(pod)
	delete(p.Labels, LabelStatefulSetPodName)
	delete(p.Labels, LabelPodIndex)
	if _, pinned := p.Annotations[AnnotationClaimNode]; pinned {
		delete(p.Spec.NodeSelector, LabelHostname)
		delete(p.Annotations, AnnotationClaimNode)
	}
	p.Spec.NodeName, p.Spec.Hostname, p.Spec.Subdomain = "", "", ""
	p.Spec.Volumes = slices.DeleteFunc(p.Spec.Volumes, func(v manifests.Volume) bool {
		return slices.ContainsFunc(sts.Spec.VolumeClaimTemplates, func(ct manifests.PersistentVolumeClaim) bool { return ct.Name == v.Name })
	})
	return &manifests.PodTemplateSpec{
		ObjectMeta: manifests.ObjectMeta{Labels: p.Labels, Annotations: p.Annotations},
		Spec:       p.Spec,
	}
}

func (ctl *statefulSetController) updateStatefulSetStatus(ctx context.Context, c *cache.Cached, sts *manifests.StatefulSet, pods map[int]*manifests.Pod, currentRev, updateRev string) error {
	now := time.Now()
	minReady := time.Duration(sts.Spec.MinReadySeconds) * time.Second
	st := manifests.StatefulSetStatus{ObservedGeneration: sts.Generation, CurrentRevision: currentRev, UpdateRevision: updateRev,
		ClaimNodes: sts.Status.ClaimNodes}
	requeue := false
	for _, pod := range pods {
		st.Replicas++
		if isRunningAndReady(pod) {
			st.ReadyReplicas++
			if manifests.IsPodAvailable(pod, minReady, now) {
				st.AvailableReplicas++
			} else {
				requeue = true
			}
		}
		if pod.Labels[LabelControllerRevisionHash] == currentRev {
			st.CurrentReplicas++
		}
		if pod.Labels[LabelControllerRevisionHash] == updateRev {
			st.UpdatedReplicas++
		}
	}
	// The update is complete once every pod runs the new revision and is
	// ready: it becomes the current revision.
	desired := manifests.Int32(sts.Spec.Replicas, 1)
	if st.UpdatedReplicas == st.Replicas && st.ReadyReplicas == st.Replicas && st.Replicas == desired {
		st.CurrentRevision, st.CurrentReplicas = updateRev, st.UpdatedReplicas
	}
	if requeue {
		ctl.requeue("StatefulSet", c.Key, minReady)
	}
	if manifests.Hash(st) == manifests.Hash(sts.Status) {
		return nil
	}
	upd := cache.Clone(sts)
	upd.Status = st
	if _, err := cache.UpdateObject(ctx, ctl.store, upd, c.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
		return err
	}
	return nil
}

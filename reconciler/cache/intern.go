package cache

import (
	"maps"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"unique"

	"github.com/capstan-io/capstan/manifests"
)

// internLimit bounds each table of an interner: a full table is emptied
// and starts over. What was shared stays shared (the objects hold it);
// only new objects stop finding the old entries. It keeps the tables from
// growing with every owner, label set and second that ever came.
const internLimit = 4096

// interner makes the pods the cache holds share what pods of one owner
// hold alike: their labels, owner reference, containers and volumes, the
// timestamps of one second and the strings that repeat (namespaces,
// nodes, images, condition types). encoding/json gives each decoded pod
// its own copy of all of it, many times what is the pod's own
// (docs/BENCHMARKS.md). It relies on
// the cache's rule that cached objects are never modified in place (they
// are copied first), which sharing makes matter more: a write through a
// shared map would show in every pod holding it.
type interner struct {
	mu     sync.Mutex
	labels map[string]map[string]string
	owners map[string][]manifests.OwnerReference
	times  map[int64]*manifests.Time
	conds  map[string][]manifests.Condition
	specs  map[string]podParts // controller uid -> the parts of the last pod seen
	key    []byte              // the lookup key being built
}

// podParts are the parts of a pod spec its template decides.
type podParts struct {
	containers, initContainers []manifests.Container
	volumes                    []manifests.Volume
}

func newInterner() *interner {
	return &interner{labels: map[string]map[string]string{}, owners: map[string][]manifests.OwnerReference{},
		times: map[int64]*manifests.Time{}, conds: map[string][]manifests.Condition{}, specs: map[string]podParts{}}
}

// Str returns the one copy of s the process keeps (unique drops it once
// nothing holds it).
func Str(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

// bounded empties a table that reached internLimit.
func bounded[K comparable, V any](m map[K]V) {
	if len(m) >= internLimit {
		clear(m)
	}
}

// pod replaces parts of p, freshly decoded and not yet shared, with equal
// parts other cached pods already hold.
func (in *interner) pod(p *manifests.Pod) {
	in.mu.Lock()
	defer in.mu.Unlock()
	p.Namespace = Str(p.Namespace)
	p.Labels = in.stringMap(p.Labels)
	p.CreationTimestamp = in.time(p.CreationTimestamp)
	p.DeletionTimestamp = in.time(p.DeletionTimestamp)
	if len(p.OwnerReferences) > 0 {
		in.key = in.key[:0]
		for _, r := range p.OwnerReferences {
			in.key = append(in.key, r.UID...)
			in.key = append(in.key, 0)
		}
		if shared, ok := in.owners[string(in.key)]; ok && reflect.DeepEqual(shared, p.OwnerReferences) {
			p.OwnerReferences = shared
		} else {
			bounded(in.owners)
			p.OwnerReferences = slices.Clip(p.OwnerReferences)
			in.owners[string(in.key)] = p.OwnerReferences
		}
	}

	// Pods of one controller share a template: the last spec seen for
	// the controller is the candidate, and equal parts are taken from it.
	p.Spec.NodeName = Str(p.Spec.NodeName)
	p.Spec.NodeSelector = in.stringMap(p.Spec.NodeSelector)
	if ref := p.Controller(); ref != nil {
		if prev, ok := in.specs[ref.UID]; ok {
			if reflect.DeepEqual(prev.containers, p.Spec.Containers) {
				p.Spec.Containers = prev.containers
			}
			if reflect.DeepEqual(prev.initContainers, p.Spec.InitContainers) {
				p.Spec.InitContainers = prev.initContainers
			}
			if reflect.DeepEqual(prev.volumes, p.Spec.Volumes) {
				p.Spec.Volumes = prev.volumes
			}
		} else {
			bounded(in.specs)
		}
		p.Spec.Containers, p.Spec.InitContainers, p.Spec.Volumes = slices.Clip(p.Spec.Containers), slices.Clip(p.Spec.InitContainers), slices.Clip(p.Spec.Volumes)
		in.specs[ref.UID] = podParts{p.Spec.Containers, p.Spec.InitContainers, p.Spec.Volumes}
	}

	in.statusLocked(&p.Status)
}

// status is pod's part for a status only, as the status mirror writes it:
// st and what it holds must be the caller's alone, not yet shared.
func (in *interner) status(st *manifests.PodStatus) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.statusLocked(st)
}

func (in *interner) statusLocked(st *manifests.PodStatus) {
	st.Phase, st.HostIP = Str(st.Phase), Str(st.HostIP)
	st.Reason = Str(st.Reason)
	st.StartTime, st.ObservedAt = in.time(st.StartTime), in.time(st.ObservedAt)
	st.Conditions = in.conditions(st.Conditions)
	in.containerStatuses(st.InitContainerStatuses)
	in.containerStatuses(st.ContainerStatuses)
}

func (in *interner) stringMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	in.key = in.key[:0]
	for _, k := range slices.Sorted(maps.Keys(m)) {
		in.key = append(append(append(append(in.key, k...), 0), m[k]...), 0)
	}
	if shared, ok := in.labels[string(in.key)]; ok {
		return shared
	}
	bounded(in.labels)
	in.labels[string(in.key)] = m
	return m
}

func (in *interner) time(t *manifests.Time) *manifests.Time {
	if t == nil {
		return nil
	}
	k := t.UnixNano()
	if shared, ok := in.times[k]; ok && shared.Equal(t.Time) && shared.Location() == t.Location() {
		return shared
	}
	bounded(in.times)
	in.times[k] = t
	return t
}

func (in *interner) conditions(cs []manifests.Condition) []manifests.Condition {
	if len(cs) == 0 {
		return cs
	}
	in.key = in.key[:0]
	for i := range cs {
		c := &cs[i]
		c.Type, c.Status, c.Reason = Str(c.Type), Str(c.Status), Str(c.Reason)
		c.LastTransitionTime, c.LastHeartbeatTime, c.LastUpdateTime = in.time(c.LastTransitionTime), in.time(c.LastHeartbeatTime), in.time(c.LastUpdateTime)
		for _, f := range []string{c.Type, c.Status, c.Reason, c.Message} {
			in.key = append(append(in.key, f...), 0)
		}
		for _, t := range []*manifests.Time{c.LastTransitionTime, c.LastHeartbeatTime, c.LastUpdateTime} {
			if t != nil {
				in.key = strconv.AppendInt(in.key, t.UnixNano(), 36)
			}
			in.key = append(in.key, 0)
		}
	}
	if shared, ok := in.conds[string(in.key)]; ok && reflect.DeepEqual(shared, cs) {
		return shared
	}
	bounded(in.conds)
	cs = slices.Clip(cs) // an append to a shared slice must copy it
	in.conds[string(in.key)] = cs
	return cs
}

func (in *interner) containerStatuses(cs []manifests.ContainerStatus) {
	for i := range cs {
		c := &cs[i]
		c.Name, c.Image = Str(c.Name), Str(c.Image)
		for _, s := range []*manifests.ContainerState{&c.State, &c.LastState} {
			if r := s.Running; r != nil {
				r.StartedAt = in.time(r.StartedAt)
			}
			if t := s.Terminated; t != nil {
				t.Reason = Str(t.Reason)
				t.StartedAt, t.FinishedAt = in.time(t.StartedAt), in.time(t.FinishedAt)
			}
			if w := s.Waiting; w != nil {
				w.Reason = Str(w.Reason)
			}
		}
	}
}

package gitops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/ownership"
	"github.com/capstan-io/capstan/sources"
)

// Drift is live state that differs from the applied revision without a
// commit: an object edited or deleted on the bus. The sync finds it when
// it re-applies the applied revision (every Resync). A source corrects it
// (the default: the object is written back and the audit stream gets a
// DriftCorrected record) or, with drift.mode "report", records it
// (DriftDetected, once per distinct drift) and leaves it. Ignore rules
// name fields whose live value is kept, in both modes: once an object
// exists, an ignored field is Capstan's to create but not to manage, as an
// autoscaler's replicas are (Argo CD's ignoreDifferences with
// RespectIgnoreDifferences).

// Change actions of drift records, beside created/updated/deleted/kept.
const (
	ActionDrifted = "drifted" // differs from Git; Fields lists where
	ActionMissing = "missing" // deleted behind Git's back
	// ActionRecreated: a Podman container removed or replaced behind
	// Capstan's back, started again by its node.
	ActionRecreated = "recreated"
)

func (s *Syncer) reportsDrift() bool {
	return s.Drift != nil && s.Drift.Mode == ownership.DriftReport
}

// resyncApplied re-applies (or checks, when reporting) the last good
// revision while a newer one is rejected.
func (s *Syncer) resyncApplied(ctx context.Context) error {
	rev := &sources.Revision{ID: s.appliedID}
	if s.reportsDrift() {
		return s.reportDrift(ctx, rev, s.applied)
	}
	changes, err := s.apply(ctx, s.applied, true)
	if len(changes) > 0 {
		s.driftCorrected(ctx, rev, changes)
	}
	return err
}

// driftCorrected records drift that a re-apply put back.
func (s *Syncer) driftCorrected(ctx context.Context, rev *sources.Revision, changes []manifests.ObjectChange) {
	s.Log.Info("drift corrected", "revision", rev.ID, "changes", len(changes))
	s.audit(ctx, rev, ResultDriftCorrected, nil, changes)
	s.event(ctx, "Warning", ResultDriftCorrected, fmt.Sprintf("put back %s to revision %s", describeChanges(changes), short(rev.ID)))
}

// reportAppliedDrift reports the drift from the applied revision, which
// the source just fetched again, and records the pass as a sync.
func (s *Syncer) reportAppliedDrift(ctx context.Context, rev *sources.Revision, objs []manifests.Object) error {
	if err := s.reportDrift(ctx, rev, objs); err != nil {
		return err
	}
	s.applied, s.attempted, s.lastErr = objs, rev.ID, ""
	s.tellDeclared()
	s.writeStatus(ctx, rev.ID, "")
	return nil
}

// reportDrift compares objs with the bucket without writing, and records
// the difference once: again only when it changes.
func (s *Syncer) reportDrift(ctx context.Context, rev *sources.Revision, objs []manifests.Object) error {
	if s.inventory == nil {
		inv, err := s.listInventory(ctx)
		if err != nil {
			return err
		}
		s.inventory = inv
	}
	drift, err := s.findDrift(ctx, objs)
	if err != nil {
		return err
	}
	digest := ""
	if len(drift) > 0 {
		digest = manifests.Hash(drift)
	}
	if digest == s.driftSeen {
		return nil
	}
	s.driftSeen = digest
	if len(drift) == 0 {
		s.Log.Info("drift gone", "revision", rev.ID)
		return nil
	}
	s.Log.Warn("drift detected; reporting only", "revision", rev.ID, "objects", len(drift))
	s.audit(ctx, rev, ResultDriftDetected, nil, drift)
	s.event(ctx, "Warning", ResultDriftDetected, fmt.Sprintf("%s differ from revision %s (drift mode report: left as is)", describeChanges(drift), short(rev.ID)))
	return nil
}

// findDrift lists how the bucket differs from objs, as applyOne would
// see it, without writing.
func (s *Syncer) findDrift(ctx context.Context, objs []manifests.Object) ([]manifests.ObjectChange, error) {
	var drift []manifests.ObjectChange
	sorted := make([]manifests.Object, 0, len(objs))
	for _, o := range objs {
		o = cache.Clone(o)
		m := o.GetObjectMeta()
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[manifests.AnnotationSource] = s.Name
		sorted = append(sorted, o)
	}
	manifests.SortObjects(sorted)
	for _, obj := range sorted {
		key := manifests.KeyOf(obj)
		kind, ns, name, _ := manifests.SplitKey(key)
		cur, _, err := cache.GetObject(ctx, s.Objects, key)
		if errors.Is(err, bus.ErrNotFound) {
			drift = append(drift, manifests.ObjectChange{Action: ActionMissing, Kind: kind, Namespace: ns, Name: name})
			continue
		}
		if err != nil {
			return nil, err
		}
		if cur.GetObjectMeta().Annotations[manifests.AnnotationSource] != s.Name {
			continue // not ours: the apply of the revision said so already
		}
		cmp, err := ownership.Compare(obj, cur, s.Drift)
		if err != nil {
			return nil, err
		}
		if cmp.Changed() {
			drift = append(drift, manifests.ObjectChange{Action: ActionDrifted, Kind: kind, Namespace: ns, Name: name, Fields: cmp.Fields()})
		}
	}
	return drift, nil
}

// describeChanges summarises changes for an event: "Deployment
// default/web (spec.replicas) and 2 more".
func describeChanges(changes []manifests.ObjectChange) string {
	if len(changes) == 0 {
		return "nothing"
	}
	c := changes[0]
	name := c.Name
	if c.Namespace != "" {
		name = c.Namespace + "/" + c.Name
	}
	out := c.Kind + " " + name
	switch {
	case c.Action == ActionMissing || c.Action == "created":
		out += " (deleted)"
	case len(c.Fields) > 0:
		out += " (" + strings.Join(c.Fields[:min(3, len(c.Fields))], ", ")
		if len(c.Fields) > 3 {
			out += ", ..."
		}
		out += ")"
	}
	if len(changes) > 1 {
		out += fmt.Sprintf(" and %d more", len(changes)-1)
	}
	return out
}

// containerWatch finds containers changed behind Capstan's back, from
// the pod status nodes report; nodes write no audit records, so the
// control plane does.
//
// Changed in place (paused, limits, renamed, a container Capstan did not
// create running in its place): the node finds them, corrects them or,
// in report mode, leaves them, and lists them in status.drift; each entry
// (container, field, time) is recorded once. Entries already listed when
// the control plane first sees a pod are taken as recorded by the
// control plane before it, unless they are newer than its start.
//
// Replaced: it remembers, per pod and container, the running instance
// last seen (its container ID and start time) and the pod's spec. A new
// running instance is drift when the one before it is not the new one's
// last state: the node restarts a container that exited (a crash, or a
// `podman stop`) keeping the exited instance, so its status shows that
// instance as lastState; a container removed (`podman rm -f`, or its
// whole pod) leaves nothing, and the node creates a new one with no
// lastState, or with an older one. A spec change (the pod was updated, so
// its node replaced it on purpose) is not drift. What it cannot see: a
// container stopped or killed behind Capstan's back looks like a crash,
// and is counted as a restart, not as drift; a replacement made while the
// control plane was down is not seen.
type containerWatch struct {
	mu       sync.Mutex
	seen     map[string]containerSeen // pod uid/container -> last running instance
	recorded map[string]bool          // pod uid/container/field/time of status.drift entries
	pods     map[string]bool          // pod uids observed
	start    time.Time
}

func newContainerWatch() *containerWatch {
	return &containerWatch{seen: map[string]containerSeen{}, recorded: map[string]bool{}, pods: map[string]bool{}, start: time.Now()}
}

type containerSeen struct {
	id      string
	started time.Time
	spec    string
}

// containerDrift is one container found replaced (change nil) or changed
// in place.
type containerDrift struct {
	pod       *manifests.Pod
	container string
	change    *manifests.ContainerDrift
}

// observe takes a pod's new status and returns its containers replaced or
// changed since the last observation.
func (w *containerWatch) observe(_, cur *manifests.Pod) []containerDrift {
	if cur.DeletionTimestamp != nil {
		return nil
	}
	spec := manifests.Hash(cur.Spec)
	var out []containerDrift
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.recorded == nil { // a zero watch, in tests
		w.recorded, w.pods = map[string]bool{}, map[string]bool{}
	}
	known := w.pods[cur.UID]
	w.pods[cur.UID] = true
	replacedByHand := map[string]bool{} // the node found and reports these itself
	for i := range cur.Status.Drift {
		ch := &cur.Status.Drift[i]
		if ch.Field == "instance" {
			replacedByHand[ch.Container] = true
		}
		if ch.Time == nil {
			continue // not from a node of this version
		}
		k := cur.UID + "/" + ch.Container + "/" + ch.Field + "/" + ch.Action + "/" + ch.Time.UTC().Format(time.RFC3339Nano)
		if w.recorded[k] {
			continue
		}
		w.recorded[k] = true
		if !known && ch.Time.Time.Before(w.start) {
			continue // listed before this control plane started: recorded by the one before
		}
		out = append(out, containerDrift{pod: cur, container: ch.Container, change: ch})
	}
	for _, cs := range cur.Status.ContainerStatuses {
		run := cs.State.Running
		if run == nil || cs.ContainerID == "" || run.StartedAt == nil {
			continue
		}
		k := cur.UID + "/" + cs.Name
		prev, ok := w.seen[k]
		w.seen[k] = containerSeen{id: cs.ContainerID, started: run.StartedAt.Time, spec: spec}
		if !ok || prev.id == cs.ContainerID || prev.spec != spec || replacedByHand[cs.Name] {
			continue
		}
		if lt := cs.LastState.Terminated; lt != nil && lt.StartedAt != nil && lt.StartedAt.Time.Equal(prev.started) {
			continue // the instance we saw exited and was restarted
		}
		out = append(out, containerDrift{pod: cur, container: cs.Name})
	}
	return out
}

// forget drops a deleted pod's containers.
func (w *containerWatch) forget(p *manifests.Pod) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, cs := range p.Status.ContainerStatuses {
		delete(w.seen, p.UID+"/"+cs.Name)
	}
	delete(w.pods, p.UID)
	for k := range w.recorded {
		if strings.HasPrefix(k, p.UID+"/") {
			delete(w.recorded, k)
		}
	}
}

// ActionAltered: a Podman container changed in place behind Capstan's
// back (paused, limits, renamed) or one Capstan did not create running in
// its place; Fields says what (containers.<name>.<field>).
const ActionAltered = "altered"

// containerDriftRecord is the audit record of a container drift.
func containerDriftRecord(source, rev string, d containerDrift) manifests.AuditRecord {
	p := d.pod
	where := fmt.Sprintf("container %s of pod %s/%s on node %s", d.container, p.Namespace, p.Name, p.Spec.NodeName)
	rec := manifests.AuditRecord{Action: manifests.ActionDrift, Actor: "node:" + p.Spec.NodeName, Source: source, Revision: rev,
		Time: manifests.Now(), Result: ResultDriftCorrected}
	if d.change == nil {
		rec.Message = where + " was removed or replaced outside Capstan; the node started it again"
		rec.Changes = []manifests.ObjectChange{{Action: ActionRecreated, Kind: "Pod", Namespace: p.Namespace, Name: p.Name, Fields: []string{"containers." + d.container}}}
		return rec
	}
	ch := d.change
	what := fmt.Sprintf("%s: %s is %s, Git says %s", where, ch.Field, ch.Found, ch.Want)
	switch ch.Field {
	case "state.paused":
		what = where + " was paused"
	case "instance":
		what = fmt.Sprintf("%s: a %s", where, ch.Found)
	case "name":
		what = fmt.Sprintf("%s was renamed to %s", where, ch.Found)
	}
	rec.Message = what + " outside Capstan; the node put it back"
	if ch.Action == "reported" {
		rec.Result = ResultDriftDetected
		rec.Message = what + " outside Capstan; left as is (drift mode report)"
	}
	rec.Changes = []manifests.ObjectChange{{Action: ActionAltered, Kind: "Pod", Namespace: p.Namespace, Name: p.Name, Fields: []string{"containers." + d.container + "." + ch.Field}}}
	return rec
}

// recordContainerDrift records a container replaced or changed behind
// Capstan's back (containerWatch) as drift of the source its pod comes
// from: an audit record, an event on the pod, a notice.
func (m *SourceManager) recordContainerDrift(d containerDrift) {
	ctx := context.Background() // the cache's handler has no context; writes are short
	source := m.sourceOf(d.pod)
	if source == "" {
		return
	}
	rev := ""
	if c, ok := m.cache.Get(manifests.Key("Source", "", source)); ok {
		rev = c.Obj.(*manifests.Source).Status.AppliedRevision
	}
	rec := containerDriftRecord(source, rev, d)
	m.Log.Warn("container drift", "source", source, "pod", d.pod.Namespace+"/"+d.pod.Name, "container", d.container,
		"node", d.pod.Spec.NodeName, "result", rec.Result, "fields", rec.Changes[0].Fields)
	if m.Audit != nil {
		if err := m.Audit.Append(ctx, rec); err != nil {
			m.Log.Error("write audit record", "source", source, "err", err)
		}
	}
	if m.Events != nil {
		_ = m.Events.Record(ctx, manifests.Event{Time: manifests.Now(), Kind: "Pod", Namespace: d.pod.Namespace, Name: d.pod.Name,
			Type: "Warning", Reason: rec.Result, Message: rec.Message, Source: "sources"})
	}
	if m.Notify != nil {
		if n, ok := NoticeFromAudit(rec); ok {
			n.URL = m.sourceURL(source)
			m.Notify.Notify(n)
		}
	}
}

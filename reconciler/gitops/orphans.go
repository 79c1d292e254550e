package gitops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/workqueue"
)

// The orphan sweep: an object in the objects bucket that no source
// declares and no controller owns was written behind Git's back (a
// process with write access to the bucket); it is deleted and recorded as
// drift. Declared means its source runs here with a known inventory that
// holds it (Declarations); owned means a controller reference to a live
// owner with that uid (a dangling one is the garbage collector's). Left
// alone: the root's Source object (the sync writes it), objects a source
// kept (prune disabled, or its Source removed with prune off: "kept" in
// the audit stream), and whatever claims a source whose inventory is not
// known (not synced since start, stopped, waiting). Nothing is swept
// before every source has attempted its first sync.

// ActorControlPlane is the actor of what the control plane does itself.
const ActorControlPlane = "control-plane"

// ActionOrphaned is the change of an orphan left as is: its source only
// reports drift.
const ActionOrphaned = "orphaned"

type orphanSweep struct {
	objects bus.Store
	cache   *cache.Cache
	log     *slog.Logger
	decl    *Declarations
	audit   bus.Audit

	mu       sync.Mutex
	kept     map[string]map[string]bool // source -> keys kept, from its audit records
	reported map[string]uint64          // key -> bus revision reported (report-only sources)
}

// OrphanSweep is the control plane's "orphans" controller: it deletes,
// and records in audit, the objects no source in decl declares and no
// controller owns.
func OrphanSweep(audit bus.Audit, decl *Declarations) controllers.Addon {
	return func(sh controllers.Shared) *controllers.Controller {
		o := &orphanSweep{objects: sh.Objects, cache: sh.Cache, log: sh.Log, audit: audit, decl: decl,
			kept: map[string]map[string]bool{}, reported: map[string]uint64{}}
		q := workqueue.New()
		return &controllers.Controller{Name: "orphans", Queue: q, Reconcile: o.reconcile, Resync: o.candidates,
			OnObject: o.onObject(q), Watch: func(ctx context.Context) error { return o.watch(ctx, q) }}
	}
}

// unowned: neither controlled (owned, or the gc's) nor already going.
func unowned(obj manifests.Object) bool {
	m := obj.GetObjectMeta()
	return m.Controller() == nil && m.DeletionTimestamp == nil
}

// onObject queues every unowned object written.
func (o *orphanSweep) onObject(q *workqueue.Queue) cache.Handler {
	return func(key string, _, cur manifests.Object) {
		if o.decl != nil && cur != nil && unowned(cur) {
			q.Add(key)
		}
	}
}

// candidates lists the unowned objects (the resync, and every change of
// the declarations).
func (o *orphanSweep) candidates(keep func(string) bool) []string {
	if o.decl == nil {
		return nil
	}
	var keys []string
	for _, k := range manifests.Kinds() {
		if k.Kind == "Node" { // its own bucket
			continue
		}
		keys = append(keys, o.cache.Keys(k.Kind, func(c *cache.Cached) bool { return keep(c.Key) && unowned(c.Obj) })...)
	}
	return keys
}

// watch re-queues the candidates when the declarations change: sweeping
// opens, a source's inventory becomes known, a source is forgotten.
func (o *orphanSweep) watch(ctx context.Context, q *workqueue.Queue) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.decl.changed:
			for _, k := range o.candidates(func(string) bool { return true }) {
				q.Add(k)
			}
		}
	}
}

// orphanVerdict is why an object is an orphan.
type orphanVerdict struct {
	orphan   bool
	claims   string // the source it claims
	why      string
	report   bool   // its source reports drift only
	revision string // its source's applied revision
}

// judge decides whether obj, at key, is an orphan.
func (o *orphanSweep) judge(ctx context.Context, key string, obj manifests.Object) (orphanVerdict, error) {
	m := obj.GetObjectMeta()
	if !unowned(obj) {
		return orphanVerdict{}, nil
	}
	claim := m.Annotations[manifests.AnnotationSource]
	if claim == "" {
		if obj.GetTypeMeta().Kind == "Source" && m.Name == o.decl.rootName() {
			return orphanVerdict{}, nil // the root's status, written by its syncer
		}
		return orphanVerdict{orphan: true, why: "claims no source"}, nil
	}
	st := o.decl.state(claim, key)
	switch {
	case st.known && st.declares:
		return orphanVerdict{}, nil
	case st.registered && !st.known:
		return orphanVerdict{}, nil // inventory unknown: not synced since start, stopped
	case !st.registered && o.declaredSource(claim):
		return orphanVerdict{}, nil // a Source the manager has not taken up yet
	}
	kept, err := o.isKept(ctx, claim, key)
	if err != nil || kept {
		return orphanVerdict{}, err
	}
	v := orphanVerdict{orphan: true, claims: claim, report: st.report, revision: st.revision,
		why: fmt.Sprintf("claims source %s, which does not declare it", claim)}
	if !st.registered {
		v.why = fmt.Sprintf("claims source %s, which does not exist", claim)
	}
	return v, nil
}

// declaredSource reports whether a Source declared in Git is named name.
func (o *orphanSweep) declaredSource(name string) bool {
	c, ok := o.cache.Get(manifests.Key("Source", "", name))
	return ok && c.Obj.GetObjectMeta().Annotations[manifests.AnnotationSource] != ""
}

// isKept reports whether source's last membership change of key is
// "kept": what this process saw, else the source's audit records (read
// once per source).
func (o *orphanSweep) isKept(ctx context.Context, source, key string) (bool, error) {
	if kept, seen := o.decl.keptLive(source, key); seen {
		return kept, nil
	}
	o.mu.Lock()
	keys, ok := o.kept[source]
	o.mu.Unlock()
	if !ok {
		recs, err := o.audit.List(ctx, source, time.Time{})
		if err != nil {
			return false, fmt.Errorf("read history of source %s: %w", source, err)
		}
		keys = keptKeys(recs)
		o.mu.Lock()
		o.kept[source] = keys
		o.mu.Unlock()
	}
	return keys[key], nil
}

// keptKeys lists the keys whose last membership change is "kept".
func keptKeys(recs []manifests.AuditRecord) map[string]bool {
	keys := map[string]bool{}
	for _, r := range recs {
		for _, c := range r.Changes {
			if kept, ok := keptChange(c.Action); ok {
				keys[manifests.Key(c.Kind, c.Namespace, c.Name)] = kept
			}
		}
	}
	maps.DeleteFunc(keys, func(_ string, kept bool) bool { return !kept })
	return keys
}

// reconcile deletes (or, for a report-only source, reports) the object at
// key if it is an orphan, judged again on a fresh read, and records it.
func (o *orphanSweep) reconcile(ctx context.Context, key string) error {
	if o.decl == nil || !o.decl.isOpen() {
		return nil
	}
	c, ok := o.cache.Get(key)
	if !ok {
		o.mu.Lock()
		delete(o.reported, key)
		o.mu.Unlock()
		return nil
	}
	if v, err := o.judge(ctx, key, c.Obj); err != nil || !v.orphan {
		return err
	}
	// The write as the bus holds it: its revision and time.
	e, err := o.objects.Get(ctx, key)
	if errors.Is(err, bus.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	obj, err := manifests.Decode(e.Value)
	if err != nil {
		return nil // the cache skipped it as well: nothing runs it
	}
	v, err := o.judge(ctx, key, obj)
	if err != nil || !v.orphan {
		return err
	}
	kind, ns, name, _ := manifests.SplitKey(key)
	what := fmt.Sprintf("%s %s", kind, manifests.JoinName(ns, name))
	msg := fmt.Sprintf("%s was written outside any sync (bus revision %d at %s, writer unknown), no controller owns it, and it %s",
		what, e.Revision, e.Time.UTC().Format(time.RFC3339), v.why)
	if hints := writerHints(obj); len(hints) > 0 {
		msg += "; it carries " + strings.Join(hints, ", ")
	}
	rec := ActionRecord{Action: manifests.ActionDrift, Actor: ActorControlPlane, Source: v.claims, Revision: v.revision}
	log := o.log.With("object", what, "bus_revision", e.Revision, "source", v.claims)
	if v.report {
		o.mu.Lock()
		seen := o.reported[key] == e.Revision
		o.reported[key] = e.Revision
		o.mu.Unlock()
		if seen {
			return nil
		}
		rec.Result, rec.Message = ResultDriftDetected, msg+": left as is (drift mode report)"
		rec.Changes = []manifests.ObjectChange{{Action: ActionOrphaned, Kind: kind, Namespace: ns, Name: name}}
		log.Warn("orphan object found; its source reports drift only", "why", v.why)
	} else {
		if err := controllers.DeleteGracefully(ctx, o.objects, key, e.Revision); err != nil {
			if errors.Is(err, bus.ErrNotFound) {
				return nil
			}
			return err // a conflict: judged again on the next write's event
		}
		rec.Message = msg + ": deleted"
		rec.Changes = []manifests.ObjectChange{{Action: "deleted", Kind: kind, Namespace: ns, Name: name}}
		if v.claims != "" {
			o.decl.note(v.claims, rec.Changes) // a later object at key is not kept
		}
		log.Warn("orphan object deleted", "why", v.why)
	}
	if err := RecordAction(ctx, o.audit, rec); err != nil {
		log.Error("write audit record", "err", err)
	}
	return nil
}

// writerHints lists what obj says of who wrote it: managers in its labels
// and annotations, a commit it claims.
func writerHints(obj manifests.Object) []string {
	m := obj.GetObjectMeta()
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m.Labels)) {
		if strings.HasSuffix(k, "managed-by") {
			out = append(out, fmt.Sprintf("label %s=%s", k, m.Labels[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.Annotations)) {
		switch {
		case strings.HasSuffix(k, "managed-by"):
			out = append(out, fmt.Sprintf("annotation %s=%s", k, m.Annotations[k]))
		case k == manifests.AnnotationCommit:
			out = append(out, fmt.Sprintf("annotation %s=%s (a commit it claims)", k, short(m.Annotations[k])))
		case k == "kubectl.kubernetes.io/last-applied-configuration":
			out = append(out, "annotation "+k+" (kubectl apply)")
		}
	}
	return out
}

package gitops

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
)

// memAudit is a bus.Audit in memory.
type memAudit struct {
	mu   sync.Mutex
	recs []manifests.AuditRecord
}

func (a *memAudit) Append(_ context.Context, rec manifests.AuditRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, rec)
	return nil
}

func (a *memAudit) List(_ context.Context, source string, _ time.Time) ([]manifests.AuditRecord, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []manifests.AuditRecord
	for _, r := range a.recs {
		if source == "" || r.Source == source {
			out = append(out, r)
		}
	}
	return out, nil
}

// TestDeclarationsGate: nothing is swept before the manager registered its
// sources and each running one attempted a sync; then it stays open.
func TestDeclarationsGate(t *testing.T) {
	d := NewDeclarations()
	d.setRoot("root")
	d.starting("root", false)
	d.stopped("suspended")
	if d.isOpen() {
		t.Fatal("open before the manager's first pass")
	}
	d.managerReady()
	if d.isOpen() {
		t.Fatal("open before root's first sync")
	}
	d.attempted("root")
	if !d.isOpen() {
		t.Fatal("closed after every running source attempted (a stopped one does not count)")
	}
	d.starting("late", false)
	if !d.isOpen() {
		t.Fatal("a source started later closed it again")
	}
	if st := d.state("late", "ConfigMap.default.x"); !st.registered || st.known {
		t.Fatalf("a source not yet synced: %+v", st)
	}
	// An apply widens the inventory before it writes; success sets it.
	d.applied("late", map[string]bool{"ConfigMap.default.a": true}, "rev1")
	d.adding("late", []manifests.Object{&manifests.ConfigMap{TypeMeta: manifests.TypeMeta{Kind: "ConfigMap"}, ObjectMeta: manifests.ObjectMeta{Name: "b", Namespace: "default"}}})
	if !d.state("late", "ConfigMap.default.a").declares || !d.state("late", "ConfigMap.default.b").declares {
		t.Fatal("an apply under way narrowed the inventory")
	}
	d.stopped("late")
	if st := d.state("late", "ConfigMap.default.a"); !st.registered || st.known {
		t.Fatalf("a stopped source: %+v", st)
	}
	var nilDecl *Declarations // a syncer without a registry
	nilDecl.adding("x", nil)
	nilDecl.attempted("x")
}

// TestOrphanJudge lists what the control plane and the sources make
// without being declared, or without an owner, and checks none of it is
// an orphan; then what is.
func TestOrphanJudge(t *testing.T) {
	audit := &memAudit{}
	d := NewDeclarations()
	objects := cache.New(nil, nil)
	o := &orphanSweep{cache: objects, audit: audit, decl: d, kept: map[string]map[string]bool{}, reported: map[string]uint64{}}
	d.setRoot("root")
	d.starting("root", false)
	d.starting("syncing", false) // running, no revision applied since start
	d.stopped("suspended")
	d.managerReady()
	d.attempted("root")
	d.attempted("syncing")
	d.applied("root", map[string]bool{"Deployment.default.web": true, "Service.default.web": true, "Source._.apps": true,
		"ConfigMap.default.declared": true}, "rev1")

	meta := func(name string, ann map[string]string, owners ...manifests.OwnerReference) manifests.ObjectMeta {
		return manifests.ObjectMeta{Name: name, Namespace: "default", UID: "uid-" + name, Annotations: ann, OwnerReferences: owners}
	}
	claim := func(s string) map[string]string { return map[string]string{manifests.AnnotationSource: s} }
	ctl := func(kind, name string) manifests.OwnerReference {
		return manifests.OwnerReference{Kind: kind, Name: name, UID: "uid-" + name, Controller: true}
	}
	put := func(obj manifests.Object) string {
		manifests.SetKind(obj)
		key := manifests.KeyOf(obj)
		objects.Set(key, obj, 1)
		return key
	}
	dep := &manifests.Deployment{ObjectMeta: meta("web", claim("root"))}
	svc := &manifests.Service{ObjectMeta: meta("web", claim("root"))}
	rs := &manifests.ReplicaSet{ObjectMeta: meta("web-1", nil, ctl("Deployment", "web"))}
	appsSrc := &manifests.Source{ObjectMeta: manifests.ObjectMeta{Name: "apps", UID: "uid-apps", Annotations: claim("root")}}
	rootSrc := &manifests.Source{ObjectMeta: manifests.ObjectMeta{Name: "root", UID: "uid-root"}}
	for _, obj := range []manifests.Object{dep, svc, rs, appsSrc, rootSrc} {
		put(obj)
	}
	now := manifests.Now()
	terminating := &manifests.Pod{ObjectMeta: meta("going", nil)}
	terminating.DeletionTimestamp = now
	// kept-cm left root with prune disabled before this process started
	// (in the audit stream only); live-kept in this process.
	audit.recs = append(audit.recs,
		manifests.AuditRecord{Action: manifests.ActionSync, Source: "root", Changes: []manifests.ObjectChange{{Action: "kept", Kind: "ConfigMap", Namespace: "default", Name: "kept-cm"}}},
		manifests.AuditRecord{Action: manifests.ActionSync, Source: "gone", Changes: []manifests.ObjectChange{{Action: "kept", Kind: "ConfigMap", Namespace: "default", Name: "gone-cm"}}},
		manifests.AuditRecord{Action: manifests.ActionSync, Source: "root", Changes: []manifests.ObjectChange{{Action: "kept", Kind: "ConfigMap", Namespace: "default", Name: "rekept"}}},
		manifests.AuditRecord{Action: manifests.ActionSync, Source: "root", Changes: []manifests.ObjectChange{{Action: "deleted", Kind: "ConfigMap", Namespace: "default", Name: "rekept"}}},
		manifests.AuditRecord{Action: manifests.ActionDrift, Source: "root", Changes: []manifests.ObjectChange{{Action: ActionAltered, Kind: "ConfigMap", Namespace: "default", Name: "kept-cm"}}},
	)
	d.note("root", []manifests.ObjectChange{{Action: "kept", Kind: "ConfigMap", Namespace: "default", Name: "live-kept"}})

	legit := map[string]manifests.Object{
		"declared by its source":                      &manifests.ConfigMap{ObjectMeta: meta("declared", claim("root"))},
		"a declared Deployment":                       dep,
		"a ReplicaSet of a live Deployment":           rs,
		"a pod of a live ReplicaSet":                  &manifests.Pod{ObjectMeta: meta("web-1-abcde", nil, ctl("ReplicaSet", "web-1"))},
		"an EndpointSlice of a live Service":          &manifests.EndpointSlice{ObjectMeta: meta("web", nil, ctl("Service", "web"))},
		"a dangling controller ref (the gc's)":        &manifests.Pod{ObjectMeta: meta("web-0-xyz", nil, ctl("ReplicaSet", "web-0"))},
		"a Job of a CronJob, its owner gone (gc)":     &manifests.Job{ObjectMeta: meta("nightly-1", nil, ctl("CronJob", "nightly"))},
		"the root's Source object":                    rootSrc,
		"a declared Source":                           appsSrc,
		"a source not synced since start":             &manifests.ConfigMap{ObjectMeta: meta("early", claim("syncing"))},
		"a stopped source's (suspended)":              &manifests.ConfigMap{ObjectMeta: meta("paused", claim("suspended"))},
		"a declared Source not started yet":           &manifests.ConfigMap{ObjectMeta: meta("of-apps", claim("apps"))},
		"kept (prune disabled), from the audit":       &manifests.ConfigMap{ObjectMeta: meta("kept-cm", claim("root"))},
		"kept, seen by this process":                  &manifests.ConfigMap{ObjectMeta: meta("live-kept", claim("root"))},
		"of a source removed with prune off":          &manifests.ConfigMap{ObjectMeta: meta("gone-cm", claim("gone"))},
		"terminating":                                 terminating,
		"a pod bound and owned by a live StatefulSet": &manifests.Pod{ObjectMeta: meta("db-0", nil, ctl("StatefulSet", "db"))},
	}
	put(&manifests.StatefulSet{ObjectMeta: meta("db", claim("root"))})
	for what, obj := range legit {
		manifests.SetKind(obj)
		v, err := o.judge(t.Context(), manifests.KeyOf(obj), obj)
		if err != nil || v.orphan {
			t.Errorf("%s: judged an orphan (%+v, %v)", what, v, err)
		}
	}

	orphans := map[string]struct {
		obj manifests.Object
		why string
	}{
		"no claim":                           {&manifests.Pod{ObjectMeta: meta("evil", nil)}, "claims no source"},
		"a claim its source does not make":   {&manifests.ConfigMap{ObjectMeta: meta("forged", claim("root"))}, "claims source root, which does not declare it"},
		"a claim of no source":               {&manifests.ConfigMap{ObjectMeta: meta("ghost", claim("ghost"))}, "claims source ghost, which does not exist"},
		"kept once, deleted since":           {&manifests.ConfigMap{ObjectMeta: meta("rekept", claim("root"))}, "does not declare it"},
		"a Source of nobody":                 {&manifests.Source{ObjectMeta: manifests.ObjectMeta{Name: "old-root", UID: "u"}}, "claims no source"},
		"only a non-controller owner ref":    {&manifests.Pod{ObjectMeta: meta("hanger", nil, manifests.OwnerReference{Kind: "Deployment", Name: "web", UID: "uid-web"})}, "claims no source"},
		"a Source claiming a source, forged": {&manifests.Source{ObjectMeta: manifests.ObjectMeta{Name: "evil", UID: "u", Annotations: claim("root")}}, "does not declare it"},
	}
	for what, c := range orphans {
		manifests.SetKind(c.obj)
		v, err := o.judge(t.Context(), manifests.KeyOf(c.obj), c.obj)
		if err != nil || !v.orphan || !strings.Contains(v.why, c.why) {
			t.Errorf("%s: %+v, %v; want an orphan that %s", what, v, err, c.why)
		}
	}
}

// TestRecordAction: an action needs an actor and is not a sync; its
// result defaults by action.
func TestRecordAction(t *testing.T) {
	audit := &memAudit{}
	ctx := t.Context()
	if err := RecordAction(ctx, audit, ActionRecord{Action: manifests.ActionSync, Actor: "admin:alice"}); err == nil {
		t.Error("a sync recorded as an action")
	}
	if err := RecordAction(ctx, audit, ActionRecord{Action: manifests.ActionNodeJoin}); err == nil {
		t.Error("an action without an actor")
	}
	if err := RecordAction(ctx, nil, ActionRecord{Action: manifests.ActionNodeJoin, Actor: "node:n2"}); err == nil {
		t.Error("no audit stream, no error")
	}
	err := RecordAction(ctx, audit, ActionRecord{Action: manifests.ActionCredentialsIssued, Actor: "admin:alice", Subject: "operator:bob"})
	if err != nil || len(audit.recs) != 1 {
		t.Fatalf("%v, %d records", err, len(audit.recs))
	}
	r := audit.recs[0]
	if r.Action != manifests.ActionCredentialsIssued || r.Actor != "admin:alice" || r.Subject != "operator:bob" || r.Result != ResultIssued ||
		r.Time == nil || r.IsSync() {
		t.Fatalf("record %+v", r)
	}
	if !(&manifests.AuditRecord{}).IsSync() {
		t.Fatal("a record without an action (written before actions) is a sync")
	}
}

func TestOrphansCanBeLeftOut(t *testing.T) {
	on, err := controllers.ParseControllers([]string{"*", "-orphans"})
	if err != nil || on["orphans"] || !on["gc"] {
		t.Fatalf("--controllers=*,-orphans: %v, %v", on, err)
	}
}

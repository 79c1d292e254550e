package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsauth/natsauthtest"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node/fake"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/schema"
)

// The orphan sweep against a real NATS server, real git repositories,
// the source manager and the control plane: what no source declares and
// no controller owns is deleted and recorded as drift; nothing legitimate
// is, through resyncs and a restart.

// runSweepingControlPlane runs a control plane with the audit stream and
// decl until stop (or the test's end).
func runSweepingControlPlane(t *testing.T, conn *natsbus.Conn, decl *gitops.Declarations) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	cp := &controllers.ControlPlane{Objects: conn.Objects, Assignments: conn.Assignments, Status: conn.Status,
		Nodes: conn.Nodes, Events: conn.Events, Log: logger(t), ResyncPeriod: 500 * time.Millisecond,
		Addons: []controllers.Addon{gitops.OrphanSweep(conn.Audit, decl)}}
	done := make(chan struct{})
	go func() { _ = cp.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

// startSweeping starts a control plane and a source manager sharing a
// fresh Declarations; stop stops both.
func startSweeping(t *testing.T, conn *natsbus.Conn, root *repo) (stop func()) {
	decl := gitops.NewDeclarations()
	stopCP := runSweepingControlPlane(t, conn, decl)
	_, stopM := startManager(t, conn, root, "", nil, func(m *gitops.SourceManager) { m.Declarations = decl })
	t.Cleanup(stopM)
	return func() { stopM(); stopCP() }
}

// loadObject decodes one manifest as the sync would, for writing it
// straight into the bucket.
func loadObject(t *testing.T, yaml string, annotations map[string]string) manifests.Object {
	t.Helper()
	objs, err := schema.Load([]manifests.File{{Path: "x.yaml", Data: []byte(yaml)}})
	if err != nil || len(objs) != 1 {
		t.Fatalf("load: %v (%d objects)", err, len(objs))
	}
	m := objs[0].GetObjectMeta()
	if m.Namespace == "" {
		m.Namespace = "default"
	}
	for k, v := range annotations {
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[k] = v
	}
	return objs[0]
}

// uids maps every object's key to its uid.
func uids(t *testing.T, conn *natsbus.Conn) map[string]string {
	t.Helper()
	entries, err := conn.Objects.List(context.Background(), ">")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		obj, err := manifests.Decode(e.Value)
		if err != nil {
			t.Fatal(err)
		}
		out[e.Key] = obj.GetObjectMeta().UID
	}
	return out
}

// intact fails unless every object of want is there with its uid.
func intact(t *testing.T, conn *natsbus.Conn, want map[string]string) error {
	for key, uid := range want {
		obj, _, err := cache.GetObject(context.Background(), conn.Objects, key)
		if err == nil && (obj.GetObjectMeta().UID != uid || obj.GetObjectMeta().DeletionTimestamp != nil) {
			err = fmt.Errorf("replaced or deleted (uid %s, want %s)", obj.GetObjectMeta().UID, uid)
		}
		if err != nil {
			return fmt.Errorf("%s: %w; drift records of it: %+v", key, err, sweepRecords(t, conn)[key])
		}
	}
	return nil
}

// sweepRecords returns the control plane's drift records by object key.
func sweepRecords(t *testing.T, conn *natsbus.Conn) map[string][]manifests.AuditRecord {
	t.Helper()
	out := map[string][]manifests.AuditRecord{}
	for _, r := range auditResults(t, conn, "") {
		if r.Action != manifests.ActionDrift || r.Actor != gitops.ActorControlPlane {
			continue
		}
		for _, c := range r.Changes {
			k := manifests.Key(c.Kind, c.Namespace, c.Name)
			out[k] = append(out[k], r)
		}
	}
	return out
}

// goneOrGoing: the object is deleted, or (a bound pod) terminating.
func goneOrGoing(conn *natsbus.Conn, key string) error {
	obj, _, err := cache.GetObject(context.Background(), conn.Objects, key)
	switch {
	case errors.Is(err, bus.ErrNotFound):
		return nil
	case err != nil:
		return err
	case obj.GetObjectMeta().DeletionTimestamp != nil:
		return nil
	}
	return fmt.Errorf("%s still there", key)
}

// TestOrphanSweep: a Pod, a Deployment and objects claiming sources that
// do not declare them, written straight into the bucket, are deleted
// within seconds and recorded as drift; one claiming a report-only source
// is recorded and left. Declared objects of every source, what
// controllers derived from them (ReplicaSets, pods, endpoint slices), the
// root's Source object and kept objects (prune disabled; a Source removed
// with prune off) survive resyncs and a restart of the control plane and
// the sources, after which an orphan written meanwhile goes too.
func TestOrphanSweep(t *testing.T) {
	t.Parallel()
	b := natsauthtest.Start(t)
	conn := b.ControlPlane
	apps := newRepo(t)
	apps.write("api.yaml", deployment("api", 1, "img:1", ""))
	apps.write("cm.yaml", configMap("app-cm", ""))
	apps.commit("apps")
	legacy := newRepo(t)
	legacy.write("cm.yaml", configMap("legacy-cm", ""))
	legacy.commit("legacy")
	audited := newRepo(t)
	audited.write("cm.yaml", configMap("audited-cm", ""))
	audited.commit("audited")
	srcs := func(withLegacy bool) string {
		s := sourceYAML("apps", apps.dir, "", "") + "---\n" + sourceYAML("audited", audited.dir, "", "  drift:\n    mode: report\n")
		if withLegacy {
			s += "---\n" + sourceYAML("legacy", legacy.dir, "", "  prune: false\n")
		}
		return s
	}
	root := newRepo(t)
	root.write("web.yaml", webApp(2, "img:1", ""))
	root.write("solo.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: solo}\nspec:\n  containers: [{name: c, image: img:1}]\n")
	root.write("cm.yaml", configMap("root-cm", ""))
	root.write("keep.yaml", configMap("keep-cm", protected))
	root.write("sources.yaml", srcs(true))
	root.commit("root")

	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{t: t, ctx: ctx, bus: b, conn: conn, repo: root, nodes: map[string]context.CancelFunc{}, rts: map[string]*fake.Runtime{}}
	t.Cleanup(func() {
		for _, stop := range c.nodes {
			stop()
		}
		cancel()
	})
	c.addNode("n1")
	stop := startSweeping(t, conn, root)

	c.readyPods("web", 2, "img:1", 20*time.Second)
	c.readyPods("api", 1, "img:1", 20*time.Second)
	testwait.For(t, 10*time.Second, "web's endpoints", func() error {
		if s := c.slice("web"); s == nil || readyEndpoints(s) != 2 {
			return fmt.Errorf("endpoints of web: %+v", s)
		}
		return nil
	})
	for cm, src := range map[string]string{"root-cm": "root", "keep-cm": "root", "app-cm": "apps", "legacy-cm": "legacy", "audited-cm": "audited"} {
		waitConfigMap(t, conn, cm, true, src)
	}

	// Kept objects: one protected from prune, the objects of a source
	// removed with prune off.
	root.remove("keep.yaml")
	root.write("sources.yaml", srcs(false))
	root.commit("drop keep-cm and the legacy source")
	testwait.For(t, 10*time.Second, "source legacy synced", func() error {
		if _, err := getSource(conn, "legacy"); !errors.Is(err, bus.ErrNotFound) {
			return fmt.Errorf("source legacy: %v", err)
		}
		recs := auditResults(t, conn, "legacy")
		if last := recs[len(recs)-1]; last.Result != gitops.ResultRemoved || len(last.Changes) != 1 || last.Changes[0].Action != "kept" {
			return fmt.Errorf("legacy's last record %+v", last)
		}
		return nil
	})
	waitSource(t, conn, "root", 10*time.Second, health(gitops.HealthReady, root.git("rev-parse", "HEAD")))
	legit := uids(t, conn)
	for _, k := range []string{"ConfigMap.default.keep-cm", "ConfigMap.default.legacy-cm", "Source._.root", "Pod.default.solo", "EndpointSlice.default.web"} {
		if legit[k] == "" {
			t.Fatalf("%s missing before the sweep test: %v", k, legit)
		}
	}

	// Orphans, written behind Git's back.
	evilPod := "apiVersion: v1\nkind: Pod\nmetadata:\n  name: evil-pod\n  labels: {app.kubernetes.io/managed-by: kubectl}\nspec:\n  containers: [{name: c, image: img:1}]\n"
	orphans := map[string]manifests.Object{
		"Pod.default.evil-pod":              loadObject(t, evilPod, nil),
		"Deployment.default.evil-deploy":    loadObject(t, deployment("evil-deploy", 2, "img:1", ""), nil),
		"ConfigMap.default.forged":          loadObject(t, configMap("forged", ""), map[string]string{manifests.AnnotationSource: "root"}),
		"Pod.default.forged-apps":           loadObject(t, strings.Replace(evilPod, "evil-pod", "forged-apps", 1), map[string]string{manifests.AnnotationSource: "apps"}),
		"ConfigMap.default.ghost-cm":        loadObject(t, configMap("ghost-cm", ""), map[string]string{manifests.AnnotationSource: "ghost"}),
		"ConfigMap.default.audited-forged":  loadObject(t, configMap("audited-forged", ""), map[string]string{manifests.AnnotationSource: "audited"}),
		"ConfigMap.default.claims-a-commit": loadObject(t, configMap("claims-a-commit", ""), map[string]string{controllers.AnnotationCommit: "0123456789abcdef"}),
	}
	for _, o := range orphans {
		if _, err := cache.CreateObject(ctx, conn.Objects, o); err != nil {
			t.Fatal(err)
		}
	}
	const reported = "ConfigMap.default.audited-forged"
	testwait.For(t, 3*time.Second, "the orphans deleted", func() error {
		for key := range orphans {
			if key == reported {
				continue
			}
			if err := goneOrGoing(conn, key); err != nil {
				return err
			}
		}
		return nil
	})
	testwait.For(t, 20*time.Second, "the orphans gone", func() error {
		got := uids(t, conn)
		for key := range orphans {
			if _, ok := got[key]; ok && key != reported {
				return fmt.Errorf("%s still there", key)
			}
		}
		for key := range got { // what the orphan Deployment made goes by gc
			if strings.Contains(key, "evil-deploy") {
				return fmt.Errorf("%s still there", key)
			}
		}
		return nil
	})
	recs := sweepRecords(t, conn)
	for key := range orphans {
		rs := recs[key]
		if len(rs) != 1 {
			t.Fatalf("%d records of %s, want 1: %+v", len(rs), key, rs)
		}
		r := rs[0]
		want, action := gitops.ResultDriftCorrected, "deleted"
		if key == reported {
			want, action = gitops.ResultDriftDetected, gitops.ActionOrphaned
		}
		if r.Result != want || r.Changes[0].Action != action || r.Time == nil ||
			!strings.Contains(r.Message, "written outside any sync (bus revision ") {
			t.Errorf("record of %s: %+v", key, r)
		}
	}
	for key, want := range map[string]string{
		"Pod.default.evil-pod":              "claims no source; it carries label app.kubernetes.io/managed-by=kubectl: deleted",
		"ConfigMap.default.forged":          "claims source root, which does not declare it: deleted",
		"Pod.default.forged-apps":           "claims source apps, which does not declare it",
		"ConfigMap.default.ghost-cm":        "claims source ghost, which does not exist: deleted",
		"ConfigMap.default.claims-a-commit": "annotation capstan.io/revision=0123456789ab (a commit it claims)",
		reported:                            "left as is (drift mode report)",
	} {
		if r := recs[key][0]; !strings.Contains(r.Message, want) {
			t.Errorf("record of %s says %q, want %q in it", key, r.Message, want)
		}
	}
	if r := recs["ConfigMap.default.forged"][0]; r.Source != "root" || r.Revision == "" {
		t.Errorf("a forged claim is recorded under its source at its revision: %+v", r)
	}

	// Several resyncs of the controllers (0.5 s) and the sources (1 s).
	testwait.Holds(t, 3*time.Second, "legitimate objects survive the sweep", func() error { return intact(t, conn, legit) })
	if _, _, err := cache.GetObject(ctx, conn.Objects, reported); err != nil {
		t.Fatalf("the orphan of a report-only source: %v", err)
	}
	if n := len(sweepRecords(t, conn)[reported]); n != 1 {
		t.Fatalf("the orphan of a report-only source recorded %d times", n)
	}

	// A restart: nothing legitimate goes, though the inventories are
	// rebuilt and the kept objects are known from the audit stream only;
	// an orphan written while down goes once every source has synced.
	stop()
	down := loadObject(t, configMap("while-down", ""), nil)
	if _, err := cache.CreateObject(ctx, conn.Objects, down); err != nil {
		t.Fatal(err)
	}
	startSweeping(t, conn, root)
	testwait.For(t, 20*time.Second, "the orphan made while down gone", func() error {
		if _, err := conn.Objects.Get(ctx, "ConfigMap.default.while-down"); !errors.Is(err, bus.ErrNotFound) {
			return fmt.Errorf("while-down: %v", err)
		}
		return nil
	})
	testwait.Holds(t, 3*time.Second, "legitimate objects survive a restart", func() error { return intact(t, conn, legit) })
	for key := range sweepRecords(t, conn) {
		if _, ok := legit[key]; ok {
			t.Errorf("a legitimate object was recorded as an orphan: %s", key)
		}
	}
	if got := slices.Sorted(maps.Keys(sweepRecords(t, conn))); len(got) != len(orphans)+1 {
		t.Errorf("records of %v, want the %d orphans and while-down", got, len(orphans))
	}
}

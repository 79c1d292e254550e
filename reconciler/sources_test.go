package reconciler_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/bus/natsbus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/gitops"
	"github.com/capstan-io/capstan/schema"
	"github.com/capstan-io/capstan/sources"
	"github.com/capstan-io/capstan/sources/git"
	"github.com/capstan-io/capstan/sources/webhook"
)

// These tests run the source manager over an in-process NATS server and
// real git repositories: declared sources, each its own unit; a monorepo
// split by path; dependsOn; prune on removal; drift policies; and a
// Notifier declared in Git.

// runManager runs a SourceManager whose root follows root (at path) until
// the test ends, set further by opts, and returns it.
func runManager(t *testing.T, conn *natsbus.Conn, root *repo, path string, notify *gitops.Notifiers, opts ...func(*gitops.SourceManager)) *gitops.SourceManager {
	t.Helper()
	m, stop := startManager(t, conn, root, path, notify, opts...)
	t.Cleanup(stop)
	return m
}

// startManager is runManager until stop is called.
func startManager(t *testing.T, conn *natsbus.Conn, root *repo, path string, notify *gitops.Notifiers, opts ...func(*gitops.SourceManager)) (*gitops.SourceManager, func()) {
	t.Helper()
	log := logger(t)
	src, err := git.New(git.Options{URL: root.dir, Path: path, Interval: time.Hour, CacheDir: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	m := &gitops.SourceManager{
		Root: &gitops.Syncer{Name: "root", Source: src, Load: schema.Load, Objects: conn.Objects, Audit: conn.Audit,
			Events: conn.Events, Log: log, Resync: time.Second},
		Objects: conn.Objects, Audit: conn.Audit, Events: conn.Events, Load: schema.Load, Log: log,
		CredentialsDir: t.TempDir(), Interval: 50 * time.Millisecond, Notify: notify,
		Open: func(name string, spec manifests.SourceSpec, cred gitops.SourceCredentials) (sources.Source, error) {
			opts := git.Options{URL: spec.URL, Path: spec.Path, Interval: time.Hour, CacheDir: cacheDir + "/" + name,
				PasswordFile: cred.PasswordFile, Username: cred.Username}
			if r := spec.Ref; r != nil {
				opts.Branch, opts.Tag, opts.SemVer, opts.Commit = r.Branch, r.Tag, r.SemVer, r.Commit
			}
			return git.New(opts, log)
		},
	}
	for _, o := range opts {
		o(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var ndone chan error
	if notify != nil {
		ndone = make(chan error, 1)
		go func() { ndone <- notify.Run(ctx) }()
	}
	var once sync.Once
	return m, func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("manager: %v", err)
			}
			if ndone != nil {
				<-ndone
			}
		})
	}
}

func sourceYAML(name, url, path, extra string) string {
	s := fmt.Sprintf("apiVersion: capstan.io/v1\nkind: Source\nmetadata:\n  name: %s\nspec:\n  url: %s\n", name, url)
	if path != "" {
		s += "  path: " + path + "\n"
	}
	return s + extra
}

func getSource(conn *natsbus.Conn, name string) (*manifests.Source, error) {
	obj, _, err := cache.GetObject(context.Background(), conn.Objects, manifests.Key("Source", "", name))
	if err != nil {
		return nil, err
	}
	return obj.(*manifests.Source), nil
}

// waitSource waits until the named source's status satisfies ok.
func waitSource(t *testing.T, conn *natsbus.Conn, name string, within time.Duration, ok func(*manifests.Source) error) *manifests.Source {
	t.Helper()
	var src *manifests.Source
	testwait.For(t, within, "source "+name, func() error {
		var err error
		if src, err = getSource(conn, name); err != nil {
			return err
		}
		return ok(src)
	})
	return src
}

func health(want, applied string) func(*manifests.Source) error {
	return func(s *manifests.Source) error {
		if s.Status.Health != want || applied != "" && s.Status.AppliedRevision != applied {
			return fmt.Errorf("health %s applied %s (error %q), want %s at %s", s.Status.Health, s.Status.AppliedRevision, s.Status.LastError, want, applied)
		}
		return nil
	}
}

func configMapOf(conn *natsbus.Conn, ns, name string) (*manifests.ConfigMap, error) {
	obj, _, err := cache.GetObject(context.Background(), conn.Objects, manifests.Key("ConfigMap", ns, name))
	if err != nil {
		return nil, err
	}
	return obj.(*manifests.ConfigMap), nil
}

func waitConfigMap(t *testing.T, conn *natsbus.Conn, name string, present bool, source string) {
	t.Helper()
	testwait.For(t, 10*time.Second, "config map "+name, func() error {
		cm, err := configMapOf(conn, "default", name)
		switch {
		case errors.Is(err, bus.ErrNotFound) && !present:
			return nil
		case err != nil:
			return err
		case !present:
			return fmt.Errorf("configmap %s still there", name)
		case cm.Annotations[manifests.AnnotationSource] != source:
			return fmt.Errorf("configmap %s declared by %q, want %q", name, cm.Annotations[manifests.AnnotationSource], source)
		}
		return nil
	})
}

func auditResults(t *testing.T, conn *natsbus.Conn, source string) []manifests.AuditRecord {
	t.Helper()
	recs, err := conn.Audit.List(context.Background(), source, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestDeclaredSourceIsItsOwnUnit: a Source declared in the root adds a
// second repository; a bad file there fails that source only (the root
// keeps applying), and the last good revision keeps running; removing the
// Source prunes its objects.
func TestDeclaredSourceIsItsOwnUnit(t *testing.T) {
	t.Parallel()
	conn := startBus(t)
	apps := newRepo(t)
	apps.write("a.yaml", configMap("app-a", ""))
	appsRev1 := apps.commit("apps 1")
	root := newRepo(t)
	root.write("root.yaml", configMap("root-a", ""))
	root.write("sources.yaml", sourceYAML("apps", apps.dir, "", ""))
	root.commit("root 1")
	runManager(t, conn, root, "", nil)

	waitConfigMap(t, conn, "root-a", true, "root")
	waitConfigMap(t, conn, "app-a", true, "apps")
	waitSource(t, conn, "apps", 10*time.Second, health(gitops.HealthReady, appsRev1))
	src := waitSource(t, conn, "root", 10*time.Second, health(gitops.HealthReady, ""))
	if src.Spec.URL != root.dir {
		t.Fatalf("root spec %+v", src.Spec)
	}
	// Git's spec of a declared source stays as declared.
	if s, _ := getSource(conn, "apps"); s.Spec.URL != apps.dir || s.Spec.Interval != "1m" || s.Annotations[manifests.AnnotationSource] != "root" {
		t.Fatalf("apps source %+v", s)
	}

	apps.write("bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\nnope: 1\n")
	apps.write("a2.yaml", configMap("app-b", ""))
	bad := apps.commit("apps 2: a bad file")
	waitSource(t, conn, "apps", 10*time.Second, func(s *manifests.Source) error {
		if s.Status.Health != gitops.HealthFailed || s.Status.AttemptedRevision != bad || s.Status.AppliedRevision != appsRev1 {
			return fmt.Errorf("apps %s attempted %s applied %s", s.Status.Health, s.Status.AttemptedRevision, s.Status.AppliedRevision)
		}
		if !strings.Contains(s.Status.LastError, "bad.yaml") {
			return fmt.Errorf("last error %q does not name the file", s.Status.LastError)
		}
		return nil
	})
	waitConfigMap(t, conn, "app-a", true, "apps") // the last good revision keeps running
	if _, err := configMapOf(conn, "default", "app-b"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("app-b of the rejected revision: %v", err)
	}
	root.write("root2.yaml", configMap("root-b", ""))
	root2 := root.commit("root 2")
	waitConfigMap(t, conn, "root-b", true, "root")
	waitSource(t, conn, "root", 10*time.Second, health(gitops.HealthReady, root2))

	// Removing the Source stops it and prunes its objects.
	root.remove("sources.yaml")
	root.commit("root 3: no more apps")
	waitConfigMap(t, conn, "app-a", false, "")
	testwait.For(t, 10*time.Second, "source apps gone", func() error {
		if _, err := getSource(conn, "apps"); !errors.Is(err, bus.ErrNotFound) {
			return fmt.Errorf("source apps: %v", err)
		}
		recs := auditResults(t, conn, "apps")
		if len(recs) == 0 || recs[len(recs)-1].Result != gitops.ResultRemoved {
			return fmt.Errorf("no Removed record: %+v", recs)
		}
		return nil
	})
	// The stopped syncer does not bring its Source back.
	testwait.Holds(t, 1500*time.Millisecond, "a removed source stays removed", func() error {
		if _, err := getSource(conn, "apps"); !errors.Is(err, bus.ErrNotFound) {
			return fmt.Errorf("source apps came back: %v", err)
		}
		return nil
	})
}

// TestMonorepoSplitByPath: one repository, three sources by path; a bad
// file under one path blocks only that source.
func TestMonorepoSplitByPath(t *testing.T) {
	t.Parallel()
	conn := startBus(t)
	r := newRepo(t)
	r.write("clusters/root/sources.yaml", sourceYAML("team-a", r.dir, "teams/a", "")+"---\n"+sourceYAML("team-b", r.dir, "teams/b", ""))
	r.write("teams/a/cm.yaml", configMap("a-1", ""))
	r.write("teams/b/cm.yaml", configMap("b-1", ""))
	r.commit("monorepo")
	runManager(t, conn, r, "clusters/root", nil)
	waitConfigMap(t, conn, "a-1", true, "team-a")
	waitConfigMap(t, conn, "b-1", true, "team-b")

	r.write("teams/b/broken.yaml", "kind: Nope\n")
	r.write("teams/b/cm2.yaml", configMap("b-2", ""))
	r.write("teams/a/cm2.yaml", configMap("a-2", ""))
	rev := r.commit("a grows, b breaks")
	waitConfigMap(t, conn, "a-2", true, "team-a")
	waitSource(t, conn, "team-a", 10*time.Second, health(gitops.HealthReady, rev))
	waitSource(t, conn, "team-b", 10*time.Second, func(s *manifests.Source) error {
		if s.Status.Health != gitops.HealthFailed || s.Status.AttemptedRevision != rev {
			return fmt.Errorf("team-b %s attempted %s", s.Status.Health, s.Status.AttemptedRevision)
		}
		return nil
	})
	if _, err := configMapOf(conn, "default", "b-2"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("b-2 applied from a rejected revision: %v", err)
	}
}

// TestDependsOnAndPruneOff: a source waits for the one it depends on to
// be Ready; one with prune off leaves its objects when removed.
func TestDependsOnAndPruneOff(t *testing.T) {
	t.Parallel()
	conn := startBus(t)
	base := newRepo(t)
	// A pod with no node never gets ready: base stays Progressing.
	base.write("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: waiter}\nspec:\n  containers: [{name: c, image: img:1}]\n")
	base.write("cm.yaml", configMap("base-1", ""))
	base.commit("base")
	app := newRepo(t)
	app.write("cm.yaml", configMap("app-1", ""))
	app.commit("app")
	root := newRepo(t)
	root.write("base.yaml", sourceYAML("base", base.dir, "", ""))
	root.write("app.yaml", sourceYAML("app", app.dir, "", "  prune: false\n  dependsOn: [{name: base}]\n"))
	root.commit("root")
	runManager(t, conn, root, "", nil)

	waitConfigMap(t, conn, "base-1", true, "base")
	waitSource(t, conn, "base", 10*time.Second, health(gitops.HealthProgressing, ""))
	waitSource(t, conn, "app", 10*time.Second, func(s *manifests.Source) error {
		c := manifests.FindCondition(s.Status.Conditions, "Healthy")
		if s.Status.Health != gitops.HealthProgressing || c == nil || !strings.Contains(c.Message, "waiting for source base") {
			return fmt.Errorf("app %s %+v", s.Status.Health, c)
		}
		return nil
	})
	if _, err := configMapOf(conn, "default", "app-1"); !errors.Is(err, bus.ErrNotFound) {
		t.Fatalf("app synced before base was Ready: %v", err)
	}
	base.remove("pod.yaml")
	base.commit("base without the pod")
	waitSource(t, conn, "base", 10*time.Second, health(gitops.HealthReady, ""))
	waitConfigMap(t, conn, "app-1", true, "app")
	waitSource(t, conn, "app", 10*time.Second, health(gitops.HealthReady, ""))

	root.remove("app.yaml")
	root.commit("no app")
	testwait.For(t, 10*time.Second, "source app gone", func() error {
		if _, err := getSource(conn, "app"); !errors.Is(err, bus.ErrNotFound) {
			return fmt.Errorf("source app: %v", err)
		}
		return nil
	})
	testwait.Holds(t, 1500*time.Millisecond, "the prune-off source's objects stay", func() error {
		_, err := configMapOf(conn, "default", "app-1")
		return err
	})
}

// editConfigMap changes a ConfigMap on the bus behind Git's back.
func editConfigMap(t *testing.T, conn *natsbus.Conn, name string, change func(*manifests.ConfigMap)) {
	t.Helper()
	ctx := context.Background()
	for range 5 {
		obj, rev, err := cache.GetObject(ctx, conn.Objects, manifests.Key("ConfigMap", "default", name))
		if err != nil {
			t.Fatal(err)
		}
		cm := obj.(*manifests.ConfigMap)
		change(cm)
		if _, err = cache.UpdateObject(ctx, conn.Objects, cm, rev); err == nil {
			return
		}
	}
	t.Fatal("could not edit the configmap")
}

func driftRecords(t *testing.T, conn *natsbus.Conn, source, result string) []manifests.AuditRecord {
	var out []manifests.AuditRecord
	for _, r := range auditResults(t, conn, source) {
		if r.Result == result {
			out = append(out, r)
		}
	}
	return out
}

// TestDriftPolicies: drift is corrected by default and recorded; a source
// reporting drift records it once and leaves it; ignored fields keep
// their live value in both modes.
func TestDriftPolicies(t *testing.T) {
	t.Parallel()
	conn := startBus(t)
	apps := newRepo(t)
	apps.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: watched}\ndata: {k: v, tuned: git}\n")
	apps.commit("apps")
	ignore := "    ignore: [{kind: ConfigMap, name: watched, paths: [data.tuned]}]\n"
	root := newRepo(t)
	root.write("src.yaml", sourceYAML("apps", apps.dir, "", "  drift:\n    mode: correct\n"+ignore))
	root.commit("correct")
	m := runManager(t, conn, root, "", nil)
	waitConfigMap(t, conn, "watched", true, "apps")

	// Correct mode: an ignored field keeps its live value, another is put back.
	editConfigMap(t, conn, "watched", func(c *manifests.ConfigMap) { c.Data["tuned"] = "live"; c.Data["k"] = "changed" })
	testwait.For(t, 10*time.Second, "drift corrected, the ignored field left", func() error {
		cm, err := configMapOf(conn, "default", "watched")
		if err != nil {
			return err
		}
		if cm.Data["k"] != "v" || cm.Data["tuned"] != "live" {
			return fmt.Errorf("data %v", cm.Data)
		}
		if recs := driftRecords(t, conn, "apps", gitops.ResultDriftCorrected); len(recs) != 1 ||
			!slices.Equal(recs[0].Changes[0].Fields, []string{"data.k"}) {
			return fmt.Errorf("drift records %+v", recs)
		}
		return nil
	})

	// Report mode: recorded once, left alone.
	correcting, ok := m.Running("apps")
	if !ok {
		t.Fatal("source apps is not running")
	}
	root.write("src.yaml", sourceYAML("apps", apps.dir, "", "  drift:\n    mode: report\n"+ignore))
	root.commit("report")
	testwait.For(t, 10*time.Second, "the source's drift policy", func() error {
		s, err := getSource(conn, "apps")
		if err != nil || s.Spec.Drift == nil || s.Spec.Drift.Mode != "report" {
			return fmt.Errorf("source not updated: %v", err)
		}
		return nil
	})
	// The syncer restarts with the new policy: a new source runs.
	testwait.For(t, 10*time.Second, "the reporting syncer", func() error {
		if src, ok := m.Running("apps"); !ok || src == correcting {
			return errors.New("the correcting syncer still runs, or none yet")
		}
		return nil
	})
	editConfigMap(t, conn, "watched", func(c *manifests.ConfigMap) { c.Data["k"] = "by hand" })
	testwait.For(t, 10*time.Second, "the drift recorded", func() error {
		recs := driftRecords(t, conn, "apps", gitops.ResultDriftDetected)
		if len(recs) != 1 || recs[0].Changes[0].Action != "drifted" || !slices.Equal(recs[0].Changes[0].Fields, []string{"data.k"}) {
			return fmt.Errorf("drift detected records %+v", recs)
		}
		return nil
	})
	testwait.Holds(t, 2500*time.Millisecond, "drift reported, not corrected", func() error { // two resyncs
		cm, err := configMapOf(conn, "default", "watched")
		if err != nil {
			return err
		}
		if cm.Data["k"] != "by hand" {
			return fmt.Errorf("report mode corrected the drift: %v", cm.Data)
		}
		if n := len(driftRecords(t, conn, "apps", gitops.ResultDriftDetected)); n != 1 {
			return fmt.Errorf("%d DriftDetected records for one drift", n)
		}
		return nil
	})
	evs, err := conn.Events.List(context.Background(), "Source", "", "apps")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(e manifests.Event) bool { return e.Reason == gitops.ResultDriftDetected }) {
		t.Fatalf("no DriftDetected event: %+v", evs)
	}
}

// TestNotifierFromGit: a Notifier declared in Git, its URL in a Secret of
// capstan-system, receives one message per sync result, and none for a
// source it does not follow.
func TestNotifierFromGit(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer srv.Close()
	conn := startBus(t)
	apps := newRepo(t)
	apps.write("cm.yaml", configMap("app-a", ""))
	appsRev := apps.commit("apps")
	root := newRepo(t)
	root.write("src.yaml", sourceYAML("apps", apps.dir, "", ""))
	root.write("notify.yaml", fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: capstan-system}
---
apiVersion: v1
kind: Secret
metadata: {name: hook, namespace: capstan-system}
stringData: {address: "%s/hook"}
---
apiVersion: capstan.io/v1
kind: Notifier
metadata: {name: hook}
spec:
  type: generic
  secretRef: {name: hook}
  sources: [apps]
  events: [sync]
`, srv.URL))
	root.commit("root")
	runManager(t, conn, root, "", &gitops.Notifiers{})
	waitSource(t, conn, "apps", 10*time.Second, health(gitops.HealthReady, appsRev))
	// The first sync of apps may run before the Notifier is configured;
	// a new revision is always told.
	apps.write("bad.yaml", "kind: Nope\n")
	bad := apps.commit("bad")
	testwait.For(t, 10*time.Second, "the Rejected notice", func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range got {
			if m["revision"] == bad && m["reason"] == "Rejected" && m["source"] == "apps" {
				return nil
			}
		}
		return fmt.Errorf("no Rejected notice among %v", got)
	})
	testwait.Holds(t, time.Second, "no duplicate notices", func() error {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, m := range got {
			if m["source"] != "apps" || m["event"] != "sync" {
				return fmt.Errorf("unwanted notice %v", m)
			}
			if m["revision"] == bad {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%d notices of one rejected revision", n)
		}
		return nil
	})
}

func (r *repo) remove(name string) {
	r.t.Helper()
	r.git("rm", "-q", name)
}

// TestWebhookTargetsFollowSources: the manager gives the webhook receiver
// a target per running source, the root first, with each one's
// repository and ref, and updates them as Sources stop and go.
func TestWebhookTargetsFollowSources(t *testing.T) {
	t.Parallel()
	conn := startBus(t)
	apps := newRepo(t)
	apps.write("a.yaml", configMap("app-a", ""))
	appsRev := apps.commit("apps 1")
	root := newRepo(t)
	root.write("sources.yaml", sourceYAML("apps", apps.dir, "", "  ref: {branch: main}\n")+"---\n"+
		sourceYAML("pinned", apps.dir, "", "  ref: {commit: "+appsRev+"}\n"))
	root.commit("root 1")
	var mu sync.Mutex
	var got []webhook.Target
	m := runManager(t, conn, root, "", nil, func(m *gitops.SourceManager) {
		m.Triggers = func(ts []webhook.Target) {
			mu.Lock()
			got = ts
			mu.Unlock()
		}
	})
	targets := func(want ...string) []webhook.Target {
		t.Helper()
		var ts []webhook.Target
		testwait.For(t, 10*time.Second, "the webhook targets", func() error {
			mu.Lock()
			ts = got
			mu.Unlock()
			var names []string
			for _, tg := range ts {
				names = append(names, tg.Name)
			}
			if !slices.Equal(names, want) {
				return fmt.Errorf("targets %v, want %v", names, want)
			}
			return nil
		})
		return ts
	}
	ts := targets("root", "apps", "pinned")
	if ts[0].URL != root.dir || ts[1].URL != apps.dir || ts[1].Branch != "main" || ts[1].Pinned || !ts[2].Pinned || ts[1].Trigger == nil {
		t.Fatalf("targets %+v", ts)
	}
	if s, ok := m.Running("apps"); !ok || s.Spec().URL != apps.dir {
		t.Fatalf("Running(apps) = %v, %v", s, ok)
	}
	if _, ok := m.Running("root"); !ok {
		t.Fatal("the root is not running")
	}

	// A suspended source is no target, and not running.
	root.write("sources.yaml", sourceYAML("apps", apps.dir, "", "  ref: {branch: main}\n  suspend: true\n"))
	root.commit("root 2: apps suspended, pinned removed")
	targets("root")
	if _, ok := m.Running("apps"); ok {
		t.Fatal("a suspended source is running")
	}
}

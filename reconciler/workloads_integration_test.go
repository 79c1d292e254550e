package reconciler_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/node/fake"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
)

// These tests create StatefulSets, DaemonSets, ReplicationControllers and
// Deployments directly on a real in-process NATS bus (the sync is covered
// by integration_test.go and the end-to-end tests) and run them on node
// daemons with the fake runtime.

// startBusCluster is startCluster with a repository that declares only a
// ConfigMap: the workloads are written on the bus by the test.
func startBusCluster(t *testing.T) *cluster {
	r := newRepo(t)
	r.write("keep.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n")
	r.commit("a config map")
	return startCluster(t, r)
}

func (c *cluster) create(obj manifests.Object) {
	c.t.Helper()
	if obj.GetObjectMeta().Namespace == "" {
		obj.GetObjectMeta().Namespace = "default"
	}
	if _, err := cache.CreateObject(c.ctx, c.conn.Objects, obj); err != nil {
		c.t.Fatal(err)
	}
}

// update changes an object as the sync would: a new generation.
func (c *cluster) update(key string, fn func(manifests.Object)) {
	c.t.Helper()
	testwait.For(c.t, 5*time.Second, "update of "+key, func() error {
		obj, rev, err := cache.GetObject(c.ctx, c.conn.Objects, key)
		if err != nil {
			return err
		}
		fn(obj)
		obj.GetObjectMeta().Generation++
		_, err = cache.UpdateObject(c.ctx, c.conn.Objects, obj, rev)
		return err
	})
}

func (c *cluster) get(key string) manifests.Object {
	c.t.Helper()
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, key)
	if err != nil {
		c.t.Fatalf("get %s: %v", key, err)
	}
	return obj
}

func podTemplate(app, image string) manifests.PodTemplateSpec {
	return manifests.PodTemplateSpec{
		ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "main", Image: image, Command: []string{"sleep", "3600"}}},
			RestartPolicy: manifests.RestartAlways},
	}
}

// podEvent is one change of a pod seen on the bus.
type podEvent struct {
	name    string
	uid     string
	deleted bool
	ready   bool
	node    string
}

// podRecorder records every change of the pods of the default namespace,
// in bus order.
type podRecorder struct {
	mu     sync.Mutex
	events []podEvent
}

func (c *cluster) recordPods() *podRecorder {
	rec := &podRecorder{}
	ch, err := c.conn.Objects.Watch(c.ctx, "Pod.default.>")
	if err != nil {
		c.t.Fatal(err)
	}
	go func() {
		for e := range ch {
			ev := podEvent{name: strings.TrimPrefix(e.Key, "Pod.default.")}
			switch e.Op {
			case bus.OpDelete:
				ev.deleted = true
			case bus.OpPut:
				obj, err := manifests.Decode(e.Value)
				if err != nil {
					continue
				}
				p := obj.(*manifests.Pod)
				ev.uid, ev.ready, ev.node = p.UID, manifests.IsPodReady(p), p.Spec.NodeName
			default:
				continue
			}
			rec.mu.Lock()
			rec.events = append(rec.events, ev)
			rec.mu.Unlock()
		}
	}()
	return rec
}

func (r *podRecorder) snapshot() []podEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func statefulSet(name string, replicas int32, image string) *manifests.StatefulSet {
	return &manifests.StatefulSet{
		ObjectMeta: manifests.ObjectMeta{Name: name},
		Spec: manifests.StatefulSetSpec{
			Replicas: &replicas, ServiceName: name, PodManagementPolicy: manifests.OrderedReadyPodManagement,
			Selector: &manifests.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: podTemplate(name, image),
			VolumeClaimTemplates: []manifests.PersistentVolumeClaim{{ObjectMeta: manifests.ObjectMeta{Name: "data"},
				Spec: manifests.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"}}}},
			UpdateStrategy: manifests.StatefulSetUpdateStrategy{Type: "RollingUpdate"},
		},
	}
}

func TestStatefulSetOrderingUpAndDown(t *testing.T) {
	t.Parallel()
	c := startBusCluster(t)
	c.addNode("n1")
	c.addNode("n2")
	rec := c.recordPods()
	c.create(statefulSet("db", 3, "img:1"))
	pods := c.readyPods("db", 3, "img:1", 20*time.Second)

	// Stable identity: names, hostnames, the governing service, claims.
	slices.SortFunc(pods, func(a, b *manifests.Pod) int { return strings.Compare(a.Name, b.Name) })
	for i, p := range pods {
		want := fmt.Sprintf("db-%d", i)
		if p.Name != want || p.Spec.Hostname != want || p.Spec.Subdomain != "db" {
			t.Fatalf("pod %d: name %s hostname %s subdomain %s", i, p.Name, p.Spec.Hostname, p.Spec.Subdomain)
		}
		if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].PersistentVolumeClaim == nil || p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "data-"+want {
			t.Fatalf("pod %s volumes %+v, want claim data-%s", p.Name, p.Spec.Volumes, want)
		}
		if p.Labels[controllers.LabelControllerRevisionHash] == "" {
			t.Fatalf("pod %s has no %s label", p.Name, controllers.LabelControllerRevisionHash)
		}
	}
	// Ordered start: each pod appears only once the one before is ready.
	evs := rec.snapshot()
	for i := 1; i < 3; i++ {
		first := slices.IndexFunc(evs, func(e podEvent) bool { return e.name == fmt.Sprintf("db-%d", i) })
		prevReady := slices.IndexFunc(evs, func(e podEvent) bool { return e.name == fmt.Sprintf("db-%d", i-1) && e.ready })
		if first < 0 || prevReady < 0 || first < prevReady {
			t.Fatalf("db-%d created at event %d, db-%d ready at %d: not in order: %+v", i, first, i-1, prevReady, evs)
		}
	}
	var sts *manifests.StatefulSet
	testwait.For(t, 5*time.Second, "the StatefulSet's status", func() error {
		sts = c.get(manifests.Key("StatefulSet", "default", "db")).(*manifests.StatefulSet)
		st := sts.Status
		if st.Replicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.UpdatedReplicas != 3 || st.CurrentReplicas != 3 ||
			st.CurrentRevision == "" || st.CurrentRevision != st.UpdateRevision || len(st.ClaimNodes) != 3 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	c.quiet(2 * time.Second)

	// Rolling update in reverse ordinal order.
	mark := len(rec.snapshot())
	c.update(manifests.KeyOf(sts), func(o manifests.Object) {
		o.(*manifests.StatefulSet).Spec.Template.Spec.Containers[0].Image = "img:2"
	})
	c.readyPods("db", 3, "img:2", 30*time.Second)
	var order []string
	for _, e := range rec.snapshot()[mark:] {
		if e.deleted {
			order = append(order, e.name)
		}
	}
	if !slices.Equal(order, []string{"db-2", "db-1", "db-0"}) {
		t.Fatalf("update deleted %v, want db-2, db-1, db-0", order)
	}
	testwait.For(t, 5*time.Second, "the StatefulSet's status after the update", func() error {
		st := c.get(manifests.KeyOf(sts)).(*manifests.StatefulSet).Status
		if st.CurrentRevision != st.UpdateRevision || st.UpdatedReplicas != 3 || st.CurrentRevision == sts.Status.CurrentRevision {
			return fmt.Errorf("status after update %+v", st)
		}
		return nil
	})

	// Scale down: highest first, one at a time.
	mark = len(rec.snapshot())
	c.update(manifests.KeyOf(sts), func(o manifests.Object) { o.(*manifests.StatefulSet).Spec.Replicas = manifests.Ptr(int32(1)) })
	c.readyPods("db", 1, "img:2", 15*time.Second)
	order = nil
	for _, e := range rec.snapshot()[mark:] {
		if e.deleted {
			order = append(order, e.name)
		}
	}
	if !slices.Equal(order, []string{"db-2", "db-1"}) {
		t.Fatalf("scale down deleted %v, want db-2 then db-1", order)
	}
	if p := c.pods("db"); p[0].Name != "db-0" {
		t.Fatalf("left %s, want db-0", p[0].Name)
	}
}

func TestStatefulSetPodReturnsToItsClaims(t *testing.T) {
	t.Parallel()
	c := startBusCluster(t)
	rts := map[string]*fake.Runtime{"n1": c.addNode("n1"), "n2": c.addNode("n2")}
	c.create(statefulSet("db", 1, "img:1"))
	pod := c.readyPods("db", 1, "img:1", 15*time.Second)[0]
	home := pod.Spec.NodeName
	other := map[string]string{"n1": "n2", "n2": "n1"}[home]
	if _, ok := rts[home].Volumes()["default_data-db-0"]; !ok {
		t.Fatalf("claim data-db-0 not on %s: %v", home, rts[home].Volumes())
	}
	testwait.For(t, 5*time.Second, "db-0's claim node", func() error {
		if n := c.get(manifests.Key("StatefulSet", "default", "db")).(*manifests.StatefulSet).Status.ClaimNodes["db-0"]; n != home {
			return fmt.Errorf("claim node of db-0 is %q, want %s", n, home)
		}
		return nil
	})
	// A pod that takes most of home's CPU makes the scheduler prefer the
	// other node for anything free to go there.
	hog := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "hog", Labels: map[string]string{"app": "hog"}},
		Spec: manifests.PodSpec{NodeName: home, Containers: []manifests.Container{{Name: "main", Image: "img:1",
			Resources: manifests.ResourceRequirements{Requests: manifests.ResourceList{"cpu": manifests.Quantity("3")}}}}}}
	c.create(hog)
	c.readyPods("hog", 1, "img:1", 10*time.Second)

	if err := cache.DeleteObject(c.ctx, c.conn.Objects, manifests.Key("Pod", "default", "db-0"), 0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "a new ready db-0", func() error {
		ps := c.pods("db")
		if len(ps) != 1 || ps[0].UID == pod.UID || !manifests.IsPodReady(ps[0]) {
			return fmt.Errorf("no new ready db-0 yet")
		}
		if ps[0].Spec.NodeName != home {
			return fmt.Errorf("new db-0 on %s, want %s where its claim lives", ps[0].Spec.NodeName, home)
		}
		return nil
	})
	if _, ok := rts[other].Volumes()["default_data-db-0"]; ok {
		t.Fatalf("claim data-db-0 was made on %s too", other)
	}
}

func daemonSet(name, image string) *manifests.DaemonSet {
	return &manifests.DaemonSet{
		ObjectMeta: manifests.ObjectMeta{Name: name},
		Spec: manifests.DaemonSetSpec{
			Selector:       &manifests.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template:       podTemplate(name, image),
			UpdateStrategy: manifests.DaemonSetUpdateStrategy{Type: "RollingUpdate"},
		},
	}
}

func TestDaemonSetFollowsNodes(t *testing.T) {
	t.Parallel()
	c := startBusCluster(t)
	c.addNode("n1")
	c.create(daemonSet("agent", "img:1"))
	onNodes := func(want ...string) {
		t.Helper()
		testwait.For(t, 20*time.Second, "an agent on every node", func() error {
			var got []string
			for _, p := range c.pods("agent") {
				if !manifests.IsPodReady(p) {
					return fmt.Errorf("pod %s on %q not ready", p.Name, p.Spec.NodeName)
				}
				got = append(got, p.Spec.NodeName)
			}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Errorf("agent pods on %v, want %v", got, want)
			}
			return nil
		})
	}
	status := func(desired, ready int32) {
		t.Helper()
		testwait.For(t, 10*time.Second, "the DaemonSet's status", func() error {
			st := c.get(manifests.Key("DaemonSet", "default", "agent")).(*manifests.DaemonSet).Status
			if st.DesiredNumberScheduled != desired || st.CurrentNumberScheduled != desired || st.NumberReady != ready ||
				st.NumberAvailable != ready || st.UpdatedNumberScheduled != desired || st.NumberMisscheduled != 0 {
				return fmt.Errorf("status %+v, want %d desired, %d ready", st, desired, ready)
			}
			return nil
		})
	}
	onNodes("n1")
	status(1, 1)

	c.addNode("n2") // a node joining gets one
	onNodes("n1", "n2")
	status(2, 2)
	c.quiet(2 * time.Second)

	// A rolling update replaces them one node at a time.
	rec := c.recordPods()
	c.update(manifests.Key("DaemonSet", "default", "agent"), func(o manifests.Object) {
		o.(*manifests.DaemonSet).Spec.Template.Spec.Containers[0].Image = "img:2"
	})
	c.readyPods("agent", 2, "img:2", 20*time.Second)
	live := map[string]bool{}
	maxDown := 0
	for _, e := range rec.snapshot() {
		if e.deleted {
			delete(live, e.name)
		} else {
			live[e.name] = e.ready
		}
		down := 2
		for _, r := range live {
			if r {
				down--
			}
		}
		maxDown = max(maxDown, down)
	}
	if maxDown > 1 {
		t.Fatalf("the update took %d nodes' agents down at once (maxUnavailable 1)", maxDown)
	}

	c.nodes["n2"]() // n2 leaves: NotReady, then past the eviction timeout
	onNodes("n1")
	status(1, 1)

	// Deleting the DaemonSet removes its pods (garbage collection).
	if err := cache.DeleteObject(c.ctx, c.conn.Objects, manifests.Key("DaemonSet", "default", "agent"), 0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the agent pods gone", func() error {
		if n := len(c.pods("agent")); n != 0 {
			return fmt.Errorf("%d agent pods left", n)
		}
		return nil
	})
}

func TestReplicationController(t *testing.T) {
	t.Parallel()
	c := startBusCluster(t)
	c.addNode("n1")
	tmpl := podTemplate("legacy", "img:1")
	c.create(&manifests.ReplicationController{ObjectMeta: manifests.ObjectMeta{Name: "legacy"},
		Spec: manifests.ReplicationControllerSpec{Replicas: manifests.Ptr(int32(3)), Template: &tmpl}})
	c.readyPods("legacy", 3, "img:1", 15*time.Second)
	key := manifests.Key("ReplicationController", "default", "legacy")
	testwait.For(t, 5*time.Second, "the ReplicationController's status", func() error {
		st := c.get(key).(*manifests.ReplicationController).Status
		if st.Replicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.FullyLabeledReplicas != 3 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	c.update(key, func(o manifests.Object) { o.(*manifests.ReplicationController).Spec.Replicas = manifests.Ptr(int32(1)) })
	c.readyPods("legacy", 1, "img:1", 10*time.Second)
	// A pod deleted behind its back is replaced.
	p := c.pods("legacy")[0]
	if err := cache.DeleteObject(c.ctx, c.conn.Objects, manifests.KeyOf(p), 0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the deleted pod replaced", func() error {
		ps := c.pods("legacy")
		if len(ps) != 1 || ps[0].Name == p.Name || !manifests.IsPodReady(ps[0]) {
			return fmt.Errorf("not replaced: %d pods", len(ps))
		}
		return nil
	})
}

func TestDeploymentRollsBackAfterProgressDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("slow (waits out progress deadlines): on Podman TestE2EStatefulSetAndDaemonSet rolls back past a deadline too")
	}
	t.Parallel()
	c := startBusCluster(t)
	c.addNode("n1")
	c.addNode("n2")
	d := &manifests.Deployment{
		ObjectMeta: manifests.ObjectMeta{Name: "web", Annotations: map[string]string{controllers.AnnotationCommit: "c1"}},
		Spec: manifests.DeploymentSpec{
			Replicas: manifests.Ptr(int32(2)), Selector: &manifests.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate("web", "img:1"), ProgressDeadlineSeconds: manifests.Ptr(int32(3)),
			Strategy: manifests.DeploymentStrategy{Type: manifests.RollingUpdateStrategy, RollingUpdate: &manifests.RollingUpdateDeployment{
				MaxSurge: manifests.FromInt(1), MaxUnavailable: manifests.FromInt(0)}},
		},
	}
	c.create(d)
	key := manifests.KeyOf(d)
	c.readyPods("web", 2, "img:1", 15*time.Second)
	testwait.For(t, 10*time.Second, "the rollout of img:1", func() error {
		got := c.get(key).(*manifests.Deployment)
		if msg, done, err := controllers.RolloutStatus(got); !done || err != nil {
			return fmt.Errorf("rollout of img:1: %s %v", msg, err)
		}
		return nil
	})

	// An image no node has: the new pods never become ready.
	c.update(key, func(o manifests.Object) {
		o.(*manifests.Deployment).Spec.Template.Spec.Containers[0].Image = "img:missing"
		o.GetObjectMeta().Annotations[controllers.AnnotationCommit] = "c2"
	})
	testwait.For(t, 20*time.Second, "the deadline exceeded and rolled back", func() error {
		got := c.get(key).(*manifests.Deployment)
		cond := manifests.FindCondition(got.Status.Conditions, "Progressing")
		if cond == nil || cond.Status != manifests.ConditionFalse || cond.Reason != controllers.ReasonProgressDeadlineExceeded ||
			!strings.Contains(cond.Message, "Rolled back") {
			return fmt.Errorf("progressing %+v", cond)
		}
		if _, _, err := controllers.RolloutStatus(got); err == nil {
			return fmt.Errorf("rollout status reports no failure")
		}
		return nil
	})
	// Rolled back: img:1 runs in full, and the failed template is not
	// tried again while Git still declares it.
	c.readyPods("web", 2, "img:1", 15*time.Second)
	testwait.Holds(t, 4*time.Second, "no retry of the failed template", func() error {
		for _, p := range c.pods("web") {
			if p.Spec.Containers[0].Image != "img:1" {
				return fmt.Errorf("failed template retried: pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
			}
		}
		return nil
	})
	var sets []*manifests.ReplicaSet
	entries, err := c.conn.Objects.List(c.ctx, "ReplicaSet.default.>")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		obj, _ := manifests.Decode(e.Value)
		sets = append(sets, obj.(*manifests.ReplicaSet))
	}
	hist := controllers.DeploymentHistory(c.get(key).(*manifests.Deployment), sets)
	if len(hist) != 2 || !hist[0].Failed || hist[0].Revision != 2 || hist[0].Commit != "c2" || hist[0].Replicas != 0 ||
		hist[1].Revision != 3 || hist[1].Commit != "c1" || hist[1].Images[0] != "img:1" || !strings.Contains(hist[1].ChangeCause, "rollback") {
		t.Fatalf("history %+v", hist)
	}
	evs, err := c.conn.Events.List(c.ctx, "Deployment", "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, e := range evs {
		reasons[e.Reason] = true
	}
	if !reasons[controllers.ReasonProgressDeadlineExceeded] || !reasons["DeploymentRollback"] {
		t.Fatalf("events %+v lack the deadline and the rollback", evs)
	}
	c.quiet(2 * time.Second)

	// A new template in Git rolls out, and clears the failure.
	c.update(key, func(o manifests.Object) {
		o.(*manifests.Deployment).Spec.Template.Spec.Containers[0].Image = "img:2"
	})
	c.readyPods("web", 2, "img:2", 20*time.Second)
	testwait.For(t, 10*time.Second, "the rollout back to img:2", func() error {
		got := c.get(key).(*manifests.Deployment)
		if msg, done, err := controllers.RolloutStatus(got); !done || err != nil {
			return fmt.Errorf("rollout of img:2: %s %v", msg, err)
		}
		for _, e := range entries {
			obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, e.Key)
			if err != nil {
				return err
			}
			if _, failed := obj.GetObjectMeta().Annotations[controllers.AnnotationRolloutFailed]; failed {
				return fmt.Errorf("%s still marked failed", e.Key)
			}
		}
		return nil
	})
}

func TestDeploymentMinReadySeconds(t *testing.T) {
	t.Parallel()
	c := startBusCluster(t)
	c.addNode("n1")
	d := &manifests.Deployment{
		ObjectMeta: manifests.ObjectMeta{Name: "slow"},
		Spec: manifests.DeploymentSpec{Replicas: manifests.Ptr(int32(1)), MinReadySeconds: 3,
			Selector: &manifests.LabelSelector{MatchLabels: map[string]string{"app": "slow"}}, Template: podTemplate("slow", "img:1")},
	}
	c.create(d)
	pod := c.readyPods("slow", 1, "img:1", 15*time.Second)[0]
	readyAt := manifests.FindCondition(pod.Status.Conditions, "Ready").LastTransitionTime.Time
	var availableSeen time.Time
	testwait.For(t, 10*time.Second, "web available", func() error {
		got := c.get(manifests.KeyOf(d)).(*manifests.Deployment)
		if got.Status.AvailableReplicas != 1 {
			return fmt.Errorf("not available yet")
		}
		availableSeen = time.Now()
		return nil
	})
	// Times on the bus have second precision.
	if since := availableSeen.Sub(readyAt); since < 2*time.Second {
		t.Fatalf("available %s after ready, want minReadySeconds (3s)", since)
	}
}

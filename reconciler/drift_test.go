package reconciler

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

func TestCopyFields(t *testing.T) {
	want := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Annotations: map[string]string{"git": "1"}}}
	want.Spec.Replicas = manifests.Ptr(int32(2))
	want.Spec.Template.Spec.Containers = []manifests.Container{{Name: "c", Image: "img:1"}}
	manifests.SetKind(want)
	cur := cache.Clone(want)
	cur.Spec.Replicas = manifests.Ptr(int32(7))
	cur.Spec.Template.Spec.Containers[0].Image = "img:live"
	cur.Annotations = map[string]string{"example.com/x": "live"}
	paths := func(ps ...string) []manifests.FieldPath {
		var out []manifests.FieldPath
		for _, p := range ps {
			fp, err := manifests.ParseFieldPath(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fp)
		}
		return out
	}
	got, err := CopyFields(want, cur, paths("spec.replicas", "spec.template.spec.containers[0].image",
		`metadata.annotations["example.com/x"]`, `metadata.annotations["git"]`, "spec.template.spec.containers[5].image", "spec.paused"))
	if err != nil {
		t.Fatal(err)
	}
	d := got.(*manifests.Deployment)
	if *d.Spec.Replicas != 7 || d.Spec.Template.Spec.Containers[0].Image != "img:live" ||
		!reflect.DeepEqual(d.Annotations, map[string]string{"example.com/x": "live"}) || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("CopyFields = %+v", d)
	}
	if *want.Spec.Replicas != 2 {
		t.Fatal("CopyFields changed its input")
	}
}

func TestWithIgnoredMatches(t *testing.T) {
	s := &Syncer{Drift: &manifests.DriftPolicy{Ignore: []manifests.DriftIgnore{
		{Kind: "Deployment", Name: "web", Paths: []string{"spec.replicas"}},
		{Namespace: "other", Paths: []string{"spec.paused"}},
	}}}
	mk := func(ns, name string, replicas int32) *manifests.Deployment {
		d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: ns}}
		d.Spec.Replicas = manifests.Ptr(replicas)
		manifests.SetKind(d)
		return d
	}
	if o, ok := s.withIgnored(mk("default", "web", 2), mk("default", "web", 5)); !ok || *o.(*manifests.Deployment).Spec.Replicas != 5 {
		t.Fatalf("rule on web: %v %+v", ok, o)
	}
	if _, ok := s.withIgnored(mk("default", "api", 2), mk("default", "api", 5)); ok {
		t.Fatal("a rule for web matched api")
	}
	if o, ok := s.withIgnored(mk("other", "api", 2), mk("other", "api", 5)); !ok || *o.(*manifests.Deployment).Spec.Replicas != 2 {
		t.Fatalf("namespace rule: %v %+v", ok, o)
	}
}

func TestContainerWatch(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	pod := func(id string, started time.Time, last *time.Time, image string) *manifests.Pod {
		p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", Namespace: "default", UID: "u1"}}
		p.Spec.Containers = []manifests.Container{{Name: "c", Image: image}}
		cs := manifests.ContainerStatus{Name: "c", ContainerID: id}
		if id != "" {
			cs.State.Running = &manifests.ContainerStateRunning{StartedAt: manifests.NewTime(started)}
		} else {
			cs.State.Waiting = &manifests.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		if last != nil {
			cs.LastState.Terminated = &manifests.ContainerStateTerminated{ExitCode: 1, StartedAt: manifests.NewTime(*last)}
		}
		p.Status.ContainerStatuses = []manifests.ContainerStatus{cs}
		return p
	}
	t1, t2, t3 := t0.Add(time.Minute), t0.Add(2*time.Minute), t0.Add(3*time.Minute)
	steps := []struct {
		name  string
		pod   *manifests.Pod
		drift bool
	}{
		{"first seen", pod("a", t0, nil, "img:1"), false},
		{"same container", pod("a", t0, nil, "img:1"), false},
		{"crash restart keeps the old one as last state", pod("b", t1, &t0, "img:1"), false},
		{"removed: gone while creating", pod("", time.Time{}, &t0, "img:1"), false},
		{"removed: recreated with an older last state", pod("c", t2, &t0, "img:1"), true},
		{"removed: recreated with none", pod("d", t3, nil, "img:1"), true},
		{"spec changed: replaced on purpose", pod("e", t3.Add(time.Minute), nil, "img:2"), false},
	}
	w := newContainerWatch()
	for _, st := range steps {
		got := w.observe(nil, st.pod)
		if (len(got) > 0) != st.drift {
			t.Errorf("%s: drift %v, want %v", st.name, got, st.drift)
		}
	}
	w.forget(steps[0].pod)
	if len(w.seen) != 0 {
		t.Fatalf("forget left %v", w.seen)
	}
}

// TestContainerWatchChangesInPlace: each entry of a pod's status.drift is
// recorded once, with its action; entries older than the control plane
// on a pod it sees for the first time were recorded before its restart.
func TestContainerWatchChangesInPlace(t *testing.T) {
	w := newContainerWatch()
	before, after := manifests.NewTime(w.start.Add(-time.Minute)), manifests.NewTime(w.start.Add(time.Second))
	pod := func(uid string, drift ...manifests.ContainerDrift) *manifests.Pod {
		p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p-" + uid, Namespace: "default", UID: uid}}
		p.Spec.NodeName = "n1"
		p.Spec.Containers = []manifests.Container{{Name: "c", Image: "img:1"}}
		p.Status.Drift = drift
		return p
	}
	paused := manifests.ContainerDrift{Container: "c", Field: "state.paused", Found: "paused", Want: "running", Action: "corrected", Time: after}
	memory := manifests.ContainerDrift{Container: "c", Field: "resources.limits.memory", Found: "128Mi", Want: "64Mi", Action: "reported", Time: after}
	old := manifests.ContainerDrift{Container: "c", Field: "state.paused", Action: "corrected", Time: before}

	if got := w.observe(nil, pod("u1", old, paused)); len(got) != 1 || got[0].change.Field != "state.paused" || got[0].change.Time != after {
		t.Fatalf("first observation: %+v", got)
	}
	if got := w.observe(nil, pod("u1", old, paused, memory)); len(got) != 1 || got[0].change.Field != "resources.limits.memory" {
		t.Fatalf("a new entry: %+v", got)
	}
	if got := w.observe(nil, pod("u1", paused, memory)); len(got) != 0 {
		t.Fatalf("entries seen before recorded again: %+v", got)
	}
	again := paused
	again.Time = manifests.NewTime(after.Add(time.Minute))
	if got := w.observe(nil, pod("u1", memory, again)); len(got) != 1 {
		t.Fatalf("the same change made again not recorded: %+v", got)
	}
	// An entry skipped at the first observation stays skipped.
	if got := w.observe(nil, pod("u1", old)); len(got) != 0 {
		t.Fatalf("an entry of a pod's first observation recorded later: %+v", got)
	}

	rec := containerDriftRecord("apps", "rev1", w.observe(nil, pod("u2", paused))[0])
	if rec.Result != ResultDriftCorrected || len(rec.Changes) != 1 || rec.Changes[0].Action != ActionAltered ||
		!reflect.DeepEqual(rec.Changes[0].Fields, []string{"containers.c.state.paused"}) || rec.Changes[0].Name != "p-u2" {
		t.Fatalf("record of a corrected change: %+v", rec)
	}
	rec = containerDriftRecord("apps", "rev1", containerDrift{pod: pod("u3"), container: "c", change: &memory})
	if rec.Result != ResultDriftDetected || !strings.Contains(rec.Message, "128Mi") || !strings.Contains(rec.Message, "left as is") {
		t.Fatalf("record of a reported change: %+v", rec)
	}
	w.forget(pod("u1"))
	for k := range w.recorded {
		if strings.HasPrefix(k, "u1/") {
			t.Fatalf("forget left %s", k)
		}
	}
}

// TestPodDriftPolicy: a pod gets its source's mode and the ignore rules
// that match it or its owners, with paths relative to the pod.
func TestPodDriftPolicy(t *testing.T) {
	c := cache.New(nil, nil)
	src := &manifests.Source{ObjectMeta: manifests.ObjectMeta{Name: "apps"}}
	src.Spec.Drift = &manifests.DriftPolicy{Mode: DriftReport, Ignore: []manifests.DriftIgnore{
		{Kind: "Deployment", Name: "web", Paths: []string{"spec.template.spec.containers[0].resources.limits", "spec.replicas"}},
		{Kind: "Deployment", Name: "api", Paths: []string{"spec.template.spec.containers[1]"}},
		{Kind: "Pod", Paths: []string{"spec.containers[2].name"}},
	}}
	manifests.SetKind(src)
	c.Set("Source._.apps", src, 1)
	dep := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default", UID: "d1",
		Annotations: map[string]string{manifests.AnnotationSource: "apps"}}}
	manifests.SetKind(dep)
	c.Set("Deployment.default.web", dep, 2)
	rs := &manifests.ReplicaSet{ObjectMeta: manifests.ObjectMeta{Name: "web-1", Namespace: "default", UID: "r1",
		OwnerReferences: []manifests.OwnerReference{{Kind: "Deployment", Name: "web", UID: "d1", Controller: true}}}}
	manifests.SetKind(rs)
	c.Set("ReplicaSet.default.web-1", rs, 3)
	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "web-1-x", Namespace: "default", UID: "p1",
		OwnerReferences: []manifests.OwnerReference{{Kind: "ReplicaSet", Name: "web-1", UID: "r1", Controller: true}}}}
	manifests.SetKind(pod)

	got := podDriftPolicy(c, pod)
	want := &manifests.PodDriftPolicy{Mode: DriftReport, Ignore: []string{"spec.containers[0].resources.limits", "spec.containers[2].name"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("policy %+v, want %+v", got, want)
	}
	src.Spec.Drift = nil
	if got := podDriftPolicy(c, pod); got != nil {
		t.Fatalf("no drift policy: %+v", got)
	}
	orphan := cache.Clone(pod)
	orphan.OwnerReferences[0].UID = "other"
	src.Spec.Drift = &manifests.DriftPolicy{Mode: DriftReport}
	if got := podDriftPolicy(c, orphan); got != nil {
		t.Fatalf("a pod of no source: %+v", got)
	}
}

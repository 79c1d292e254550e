package reconciler

import (
	"reflect"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

func TestCopyFields(t *testing.T) {
	want := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Annotations: map[string]string{"git": "1"}}}
	want.Spec.Replicas = manifests.Ptr(int32(2))
	want.Spec.Template.Spec.Containers = []manifests.Container{{Name: "c", Image: "img:1"}}
	manifests.SetKind(want)
	cur := Clone(want)
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
	w := &containerWatch{seen: map[string]containerSeen{}}
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

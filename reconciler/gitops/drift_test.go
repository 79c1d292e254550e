package gitops

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

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

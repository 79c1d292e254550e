package node

import (
	"reflect"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

func TestFindAlterations(t *testing.T) {
	t.Parallel()
	pod := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default", UID: "0123456789"}}
	pod.Spec.Containers = []manifests.Container{
		{Name: "app", Image: "img:1", Resources: manifests.ResourceRequirements{Limits: manifests.ResourceList{"memory": "64Mi", "cpu": "500m"}}},
		{Name: "side", Image: "img:1"},
	}
	ctr := func(name, id string, attempt int, state string) ContainerInfo {
		c := &pod.Spec.Containers[0]
		if name == "side" {
			c = &pod.Spec.Containers[1]
		}
		return ContainerInfo{ID: id, Name: containerName(pod, name, attempt), State: state,
			Labels: map[string]string{LabelContainer: name, LabelAttempt: string(rune('0' + attempt)), LabelContainerHash: ContainerHash(c)}}
	}
	ours := map[string]bool{"a0": true, "a1": true, "s0": true}
	known := func(id string) bool { return ours[id] }
	asked := LiveContainer{MemoryLimit: 64 << 20, CPULimitMilli: 500}
	fields := func(alts []alteration) []string {
		var out []string
		for _, a := range alts {
			out = append(out, a.container+" "+a.field+" "+a.found+" -> "+a.want)
		}
		return out
	}
	cases := []struct {
		name string
		ctrs []ContainerInfo
		live map[string]LiveContainer
		want []string
	}{
		{"as asked", []ContainerInfo{ctr("app", "a0", 0, StateRunning), ctr("side", "s0", 0, StateRunning)},
			map[string]LiveContainer{"a0": asked, "s0": {}}, nil},
		{"memory within a page is the same", []ContainerInfo{ctr("app", "a0", 0, StateRunning)},
			map[string]LiveContainer{"a0": {MemoryLimit: 64<<20 + 100, CPULimitMilli: 500}}, nil},
		{"paused, limits changed", []ContainerInfo{ctr("app", "a0", 0, StateRunning), ctr("side", "s0", 0, StateRunning)},
			map[string]LiveContainer{"a0": {Paused: true, MemoryLimit: 128 << 20, CPULimitMilli: 500}, "s0": {MemoryLimit: 1 << 30, CPULimitMilli: 250}},
			[]string{"app state.paused paused -> running", "app resources.limits.memory 128Mi -> 64Mi",
				"side resources.limits.memory 1Gi -> none", "side resources.limits.cpu 250m -> none"}},
		{"limits removed", []ContainerInfo{ctr("app", "a0", 0, StateRunning)}, map[string]LiveContainer{"a0": {}},
			[]string{"app resources.limits.memory none -> 64Mi", "app resources.limits.cpu none -> 500m"}},
		{"only the latest instance counts", []ContainerInfo{
			func() ContainerInfo { c := ctr("app", "a0", 0, StateExited); c.Name = "renamed"; return c }(),
			ctr("app", "a1", 1, StateRunning)}, map[string]LiveContainer{"a1": asked}, nil},
		{"renamed", []ContainerInfo{func() ContainerInfo { c := ctr("app", "a0", 0, StateRunning); c.Name = "mine"; return c }()},
			map[string]LiveContainer{"a0": asked}, []string{"app name mine -> " + containerName(pod, "app", 0)}},
		{"not created by Capstan", []ContainerInfo{ctr("app", "x9", 0, StateRunning)},
			map[string]LiveContainer{"x9": {Paused: true}}, []string{"app instance container x9 not created by Capstan -> "}},
		{"another spec's hash", []ContainerInfo{func() ContainerInfo {
			c := ctr("app", "a0", 0, StateRunning)
			c.Labels[LabelContainerHash] = "other"
			return c
		}()}, map[string]LiveContainer{"a0": asked}, []string{"app instance container a0 not created by Capstan -> "}},
		{"no hash label (made before it existed)", []ContainerInfo{func() ContainerInfo {
			c := ctr("app", "a0", 0, StateRunning)
			delete(c.Labels, LabelContainerHash)
			return c
		}()}, map[string]LiveContainer{"a0": asked}, nil},
		{"exited or created: not checked", []ContainerInfo{ctr("app", "x1", 0, StateExited), ctr("side", "x2", 0, StateCreated)},
			map[string]LiveContainer{"x1": {Paused: true}}, nil},
		{"live state unread: only what the list shows", []ContainerInfo{ctr("app", "a0", 0, StateRunning)}, nil, nil},
	}
	for _, tc := range cases {
		got := fields(findAlterations(pod, &PodInfo{Containers: tc.ctrs}, known, tc.live))
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestIgnoredDrift(t *testing.T) {
	t.Parallel()
	alts := []alteration{
		{container: "app", index: 0, field: DriftMemory},
		{container: "app", index: 0, field: DriftPaused},
		{container: "side", index: 1, field: DriftCPU},
		{container: "c10", index: 10, field: DriftCPU},
	}
	got := ignoredDrift(slicesClone(alts), []string{"spec.containers[0].resources", "spec.containers[1]"})
	if len(got) != 2 || got[0].field != DriftPaused || got[1].container != "c10" {
		t.Fatalf("ignored %+v", got)
	}
	if got := ignoredDrift(slicesClone(alts), []string{"spec.containers[0].resources.limits.mem"}); len(got) != 4 {
		t.Fatalf("a path prefix that is not a field matched: %+v", got)
	}
}

func slicesClone(a []alteration) []alteration { return append([]alteration(nil), a...) }

func TestNoteDrift(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	paused := alteration{container: "app", id: "a0", field: DriftPaused, found: "paused", want: "running"}
	memory := alteration{container: "app", id: "a0", field: DriftMemory, found: "128Mi", want: "64Mi"}

	e := noteDrift(nil, []alteration{paused}, DriftCorrected, t0)
	if len(e) != 1 || !e[0].active || !e[0].Time.Time.Equal(t0) || e[0].Action != DriftCorrected {
		t.Fatalf("new change: %+v", e)
	}
	e = noteDrift(e, []alteration{paused, memory}, DriftCorrected, t0.Add(time.Second))
	if len(e) != 2 || !e[0].Time.Time.Equal(t0) || !e[1].Time.Time.Equal(t0.Add(time.Second)) {
		t.Fatalf("a change still found keeps its entry: %+v", e)
	}
	e = noteDrift(e, nil, DriftCorrected, t0.Add(2*time.Second))
	if len(e) != 2 || e[0].active || e[1].active {
		t.Fatalf("corrected changes stay, inactive: %+v", e)
	}
	e = noteDrift(e, []alteration{paused}, DriftCorrected, t0.Add(3*time.Second))
	if len(e) != 3 || !e[2].active || !e[2].Time.Time.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("the same change again is a new entry: %+v", e)
	}
	e = noteDrift(e, nil, DriftCorrected, t0.Add(driftKeep+time.Second))
	if len(e) != 1 || !e[0].Time.Time.Equal(t0.Add(3*time.Second)) {
		t.Fatalf("corrected changes go after driftKeep: %+v", e)
	}
	r := noteDrift(nil, []alteration{memory}, DriftReported, t0)
	r = noteDrift(r, []alteration{memory}, DriftReported, t0.Add(time.Hour))
	if len(r) != 1 || !r[0].Time.Time.Equal(t0) {
		t.Fatalf("a reported change keeps its entry while it lasts: %+v", r)
	}
	if r = noteDrift(r, []alteration{memory}, DriftCorrected, t0.Add(time.Hour)); len(r) != 1 || r[0].Action != DriftCorrected {
		t.Fatalf("a reported change now corrected (mode changed) is a new entry, the reported one gone: %+v", r)
	}
	var many []driftEntry
	for i := range 2 * maxDrift {
		many = noteDrift(many, []alteration{{container: "app", id: string(rune('a' + i)), field: DriftPaused}}, DriftCorrected, t0.Add(time.Duration(i)*time.Second))
	}
	if len(many) != maxDrift || many[len(many)-1].id != string(rune('a'+2*maxDrift-1)) {
		t.Fatalf("entries not bounded to the newest %d: %d", maxDrift, len(many))
	}
}

package node

import (
	"strconv"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

func TestRestartDelay(t *testing.T) {
	t.Parallel()
	cases := map[int]time.Duration{0: 0, 1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second,
		5: 160 * time.Second, 6: 5 * time.Minute, 20: 5 * time.Minute}
	for n, want := range cases {
		if got := RestartDelay(n); got != want {
			t.Errorf("RestartDelay(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestShouldRestart(t *testing.T) {
	t.Parallel()
	cases := []struct {
		policy string
		code   int32
		want   bool
	}{
		{manifests.RestartAlways, 0, true}, {manifests.RestartAlways, 1, true}, {"", 0, true},
		{manifests.RestartOnFailure, 0, false}, {manifests.RestartOnFailure, 2, true},
		{manifests.RestartNever, 0, false}, {manifests.RestartNever, 1, false},
	}
	for _, c := range cases {
		if got := ShouldRestart(c.policy, c.code); got != c.want {
			t.Errorf("ShouldRestart(%q, %d) = %v", c.policy, c.code, got)
		}
	}
}

func inst(id string, attempt int, state string, code int32, started, finished time.Time) ContainerInfo {
	return ContainerInfo{ID: id, State: state, ExitCode: code, StartedAt: started, FinishedAt: finished,
		Labels: map[string]string{LabelContainer: "c", LabelAttempt: strconv.Itoa(attempt)}}
}

func TestPlanContainer(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	cases := []struct {
		name   string
		inst   []ContainerInfo
		policy string
		known  int
		want   containerPlan
	}{
		{"never created", nil, "Always", 0, containerPlan{create: true}},
		{"removed behind our back after 2 restarts", nil, "Always", 2, containerPlan{create: true, attempt: 3}},
		{"created, not started", []ContainerInfo{inst("a", 0, StateCreated, 0, time.Time{}, time.Time{})}, "Always", 0, containerPlan{start: "a"}},
		{"running", []ContainerInfo{inst("a", 0, StateRunning, 0, ago(time.Minute), time.Time{})}, "Always", 0, containerPlan{}},
		{"first exit restarts at once", []ContainerInfo{inst("a", 0, StateExited, 1, ago(time.Minute), ago(time.Second))}, "Always", 0, containerPlan{create: true, attempt: 1}},
		{"second exit waits 10s", []ContainerInfo{inst("a", 0, StateExited, 1, ago(time.Minute), ago(time.Minute)), inst("b", 1, StateExited, 1, ago(5*time.Second), ago(4*time.Second))}, "Always", 1, containerPlan{wait: 6 * time.Second}},
		{"back-off over", []ContainerInfo{inst("a", 0, StateExited, 1, ago(time.Minute), ago(time.Minute)), inst("b", 1, StateExited, 1, ago(time.Minute), ago(11*time.Second))}, "Always", 1, containerPlan{create: true, attempt: 2}},
		{"ran 10 min resets back-off", []ContainerInfo{inst("b", 4, StateExited, 1, ago(11*time.Minute), ago(time.Second))}, "Always", 4, containerPlan{create: true, attempt: 5}},
		{"OnFailure exit 0 stays", []ContainerInfo{inst("a", 0, StateExited, 0, ago(time.Minute), ago(time.Second))}, "OnFailure", 0, containerPlan{}},
		{"Never stays", []ContainerInfo{inst("a", 0, StateExited, 3, ago(time.Minute), ago(time.Second))}, "Never", 0, containerPlan{}},
		{"older instances removed, previous kept", []ContainerInfo{inst("a", 0, StateExited, 1, ago(time.Hour), ago(time.Hour)), inst("b", 1, StateExited, 1, ago(time.Hour), ago(time.Hour)), inst("c", 2, StateRunning, 0, ago(time.Minute), time.Time{})}, "Always", 2, containerPlan{remove: []string{"a"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := planContainer(c.inst, c.policy, c.known, now)
			if got.create != c.want.create || got.start != c.want.start || got.wait != c.want.wait || got.attempt != c.want.attempt || len(got.remove) != len(c.want.remove) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got.remove {
				if got.remove[i] != c.want.remove[i] {
					t.Fatalf("remove %v, want %v", got.remove, c.want.remove)
				}
			}
		})
	}
}

func TestPodStatus(t *testing.T) {
	t.Parallel()
	now := time.Now()
	pod := &manifests.Pod{Spec: manifests.PodSpec{RestartPolicy: "Always", Containers: []manifests.Container{{Name: "c", Image: "img"}}}}
	rp := &PodInfo{ID: "p", Created: now.Add(-time.Minute)}

	st := podStatus(pod, nil, nil, observed{waiting: map[string]manifests.ContainerStateWaiting{"c": {Reason: "ErrImageNeverPull"}}, hostIP: "10.0.0.1"}, now)
	if st.Phase != manifests.PodPending || st.ContainerStatuses[0].State.Waiting.Reason != "ErrImageNeverPull" || st.HostIP != "10.0.0.1" {
		t.Fatalf("no runtime pod: %+v", st)
	}

	rp.Containers = []ContainerInfo{inst("a", 0, StateRunning, 0, now.Add(-time.Minute), time.Time{})}
	st = podStatus(pod, rp, nil, observed{}, now)
	if st.Phase != manifests.PodRunning || !st.ContainerStatuses[0].Ready || manifests.FindCondition(st.Conditions, "Ready").Status != manifests.ConditionTrue {
		t.Fatalf("running: %+v", st)
	}
	// Unchanged readiness keeps its transition time.
	later := podStatus(pod, rp, &st, observed{}, now.Add(time.Hour))
	if manifests.Hash(later) != manifests.Hash(st) {
		t.Fatal("an unchanged pod's status changed over time")
	}

	rp.Containers = []ContainerInfo{inst("a", 0, StateExited, 1, now.Add(-time.Minute), now), inst("b", 1, StateExited, 137, now.Add(-time.Second), now)}
	rp.Containers[1].OOMKilled = true
	st = podStatus(pod, rp, &st, observed{}, now)
	cs := st.ContainerStatuses[0]
	if st.Phase != manifests.PodRunning || cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" ||
		cs.LastState.Terminated == nil || cs.LastState.Terminated.Reason != "OOMKilled" || cs.RestartCount != 1 || cs.Ready {
		t.Fatalf("crash loop: %+v", cs)
	}
	if manifests.IsPodReady(&manifests.Pod{Status: st}) {
		t.Fatal("a crash-looping pod is ready")
	}

	pod.Spec.RestartPolicy = manifests.RestartNever
	rp.Containers = []ContainerInfo{inst("a", 0, StateExited, 0, now.Add(-time.Minute), now)}
	if st := podStatus(pod, rp, nil, observed{}, now); st.Phase != manifests.PodSucceeded {
		t.Fatalf("exit 0 with Never: phase %s", st.Phase)
	}
	rp.Containers[0].ExitCode = 2
	if st := podStatus(pod, rp, nil, observed{}, now); st.Phase != manifests.PodFailed || st.ContainerStatuses[0].State.Terminated.Reason != "Error" {
		t.Fatalf("exit 2 with Never: %+v", st)
	}
}

func TestSameUsage(t *testing.T) {
	t.Parallel()
	at := func(sec int, cpu, mem int64) *manifests.PodUsage {
		return &manifests.PodUsage{Time: manifests.NewTime(time.Unix(1_700_000_000+int64(sec), 0)), CPUMilli: cpu, MemoryBytes: mem}
	}
	written := at(0, 100, 1<<20)
	for _, tc := range []struct {
		name string
		cur  *manifests.PodUsage
		want bool
	}{
		{"the sample written", written, true},
		{"same values, 15 s later", at(15, 100, 1<<20), true},
		{"same values, a minute later: refreshed", at(60, 100, 1<<20), false},
		{"other cpu", at(15, 101, 1<<20), false},
		{"other memory", at(15, 100, 2<<20), false},
		{"no sample now", nil, false},
	} {
		if got := sameUsage(written, tc.cur); got != tc.want {
			t.Errorf("%s: sameUsage = %v, want %v", tc.name, got, tc.want)
		}
	}
	if sameUsage(nil, written) {
		t.Error("a first sample needs a write")
	}
}

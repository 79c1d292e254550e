package node

import (
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// TestPodStatusTerminating: a pod marked for deletion is not ready
// (reason Terminating), keeps a non-terminal phase when its containers
// are stopped by the deletion, and reports its published ports.
func TestPodStatusTerminating(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	pod := &manifests.Pod{Spec: manifests.PodSpec{RestartPolicy: manifests.RestartNever,
		Containers: []manifests.Container{{Name: "c", Ports: []manifests.ContainerPort{{ContainerPort: 8080}}}}}}
	running := &PodInfo{Created: now.Add(-time.Minute), Ports: []PortMapping{{HostPort: 41000, ContainerPort: 8080, Protocol: "tcp"}, {ContainerPort: 53, Protocol: "udp"}},
		Containers: []ContainerInfo{inst("a", 0, StateRunning, 0, now.Add(-time.Minute), time.Time{})}}
	stopped := &PodInfo{Created: running.Created, Ports: running.Ports,
		Containers: []ContainerInfo{inst("a", 0, StateExited, 143, now.Add(-time.Minute), now)}}
	live := podStatus(pod, running, nil, observed{}, now)
	if live.Phase != manifests.PodRunning || manifests.FindCondition(live.Conditions, "Ready").Status != manifests.ConditionTrue {
		t.Fatalf("running pod: %+v", live)
	}
	if want := []manifests.PublishedPort{{ContainerPort: 8080, Protocol: "TCP", HostPort: 41000}}; len(live.HostPorts) != 1 || live.HostPorts[0] != want[0] {
		t.Errorf("host ports %+v, want %+v (a port not bound yet left out)", live.HostPorts, want)
	}
	for _, tc := range []struct {
		name  string
		rp    *PodInfo
		prev  *manifests.PodStatus
		phase string
	}{
		{"running", running, &live, manifests.PodRunning},
		{"stopped by the deletion", stopped, &live, manifests.PodRunning},
		{"finished before", stopped, &manifests.PodStatus{Phase: manifests.PodFailed}, manifests.PodFailed},
	} {
		st := podStatus(pod, tc.rp, tc.prev, observed{terminating: true}, now)
		ready := manifests.FindCondition(st.Conditions, "Ready")
		if ready.Status != manifests.ConditionFalse || ready.Reason != "Terminating" {
			t.Errorf("%s: Ready %+v", tc.name, ready)
		}
		if st.Phase != tc.phase {
			t.Errorf("%s: phase %s, want %s", tc.name, st.Phase, tc.phase)
		}
	}
}

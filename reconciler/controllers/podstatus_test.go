package controllers

import (
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

func TestStatusDiffers(t *testing.T) {
	running := manifests.PodStatus{Phase: manifests.PodRunning, Conditions: []manifests.Condition{{Type: "Ready", Status: manifests.ConditionTrue}},
		ContainerStatuses: []manifests.ContainerStatus{{Name: "c", Ready: true}}}
	notReady := running
	notReady.ContainerStatuses = []manifests.ContainerStatus{{Name: "c"}}
	empty := running
	empty.InitContainerStatuses = []manifests.ContainerStatus{} // nil to JSON
	cases := []struct {
		name string
		a, b manifests.PodStatus
		want bool
	}{
		{"equal", running, running, false},
		{"nil and empty alike", running, empty, false},
		{"another phase", running, manifests.PodStatus{Phase: manifests.PodPending}, true},
		{"a container no longer ready", running, notReady, true},
	}
	for _, c := range cases {
		if got := statusDiffers(&c.a, &c.b); got != c.want {
			t.Errorf("%s: statusDiffers = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestStatusMirrorRevision checks the revision the status watch asks of
// every report: the node's own, none for another node's or a malformed
// key, and no allocation.
func TestStatusMirrorRevision(t *testing.T) {
	s := newStatusMirror(nil)
	s.reports["Pod.default.web-1"] = report{node: "n1", rev: 7}
	for key, want := range map[string]uint64{"n1.default.web-1": 7, "n2.default.web-1": 0, "n1.default.web-2": 0, "n1": 0, "n1.default": 0} {
		if rev, ok := s.Revision(key); rev != want || ok != (want != 0) {
			t.Errorf("Revision(%q) = %d, %v; want %d", key, rev, ok, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { s.Revision("n1.default.web-1") }); n != 0 {
		t.Errorf("Revision allocates %.0f times", n)
	}
}

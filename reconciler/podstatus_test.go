package reconciler

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

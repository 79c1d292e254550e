package controllers

import (
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

// A bind alone does not queue a pod's ReplicaSet; every change the
// ReplicaSet counts does.
func TestBoundOnly(t *testing.T) {
	at := manifests.NewTime(time.Date(2026, 11, 22, 7, 0, 0, 0, time.UTC))
	pending := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p", UID: "u", Labels: map[string]string{"app": "web"}},
		Status: manifests.PodStatus{Phase: manifests.PodPending, Conditions: []manifests.Condition{{Type: "Ready", Status: manifests.ConditionFalse, LastTransitionTime: at}}}}
	bound := func(change func(p *manifests.Pod)) *manifests.Pod {
		p := *pending
		p.Spec.NodeName = "n1"
		p.Status.Conditions = append([]manifests.Condition{{Type: "PodScheduled", Status: manifests.ConditionTrue, LastTransitionTime: at}}, p.Status.Conditions...)
		if change != nil {
			change(&p)
		}
		return &p
	}
	later := manifests.NewTime(at.Add(time.Second))
	cases := []struct {
		name     string
		old, cur manifests.Object
		want     bool
	}{
		{"a bind", pending, bound(nil), true},
		{"a new pod", nil, bound(nil), false},
		{"a deleted pod", pending, nil, false},
		{"bound and ready", pending, bound(func(p *manifests.Pod) {
			p.Status.Conditions = []manifests.Condition{{Type: "Ready", Status: manifests.ConditionTrue, LastTransitionTime: later}}
		}), false},
		{"bound and relabelled", pending, bound(func(p *manifests.Pod) { p.Labels = map[string]string{"app": "other"} }), false},
		{"bound and running", pending, bound(func(p *manifests.Pod) { p.Status.Phase = manifests.PodRunning }), false},
		{"bound and deleting", pending, bound(func(p *manifests.Pod) { p.DeletionTimestamp = later }), false},
		{"a new pod of the same name", pending, bound(func(p *manifests.Pod) { p.UID = "u2" }), false},
		{"already bound", bound(nil), bound(nil), false},
	}
	for _, c := range cases {
		if got := boundOnly(c.old, c.cur); got != c.want {
			t.Errorf("%s: boundOnly = %v, want %v", c.name, got, c.want)
		}
	}
}

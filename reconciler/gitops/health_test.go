package gitops

import (
	"testing"

	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/controllers"
)

func TestObjectHealth(t *testing.T) {
	two := manifests.Ptr(int32(2))
	dep := func(gen int64, st manifests.DeploymentStatus) *manifests.Deployment {
		d := &manifests.Deployment{ObjectMeta: manifests.ObjectMeta{Name: "web", Generation: gen}}
		d.Spec.Replicas = two
		d.Status = st
		return d
	}
	pod := func(phase string, ready bool, waiting string) *manifests.Pod {
		p := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "p"}}
		p.Status.Phase = phase
		if ready {
			p.Status.Conditions = []manifests.Condition{{Type: "Ready", Status: manifests.ConditionTrue}}
		}
		if waiting != "" {
			p.Status.ContainerStatuses = []manifests.ContainerStatus{{Name: "c", State: manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: waiting}}}}
		}
		return p
	}
	job := func(cond string, suspend bool) *manifests.Job {
		j := &manifests.Job{ObjectMeta: manifests.ObjectMeta{Name: "j"}}
		if cond != "" {
			j.Status.Conditions = []manifests.Condition{{Type: cond, Status: manifests.ConditionTrue, Message: "BackoffLimitExceeded"}}
		}
		if suspend {
			j.Spec.Suspend = manifests.Ptr(true)
		}
		return j
	}
	rs := &manifests.ReplicaSet{ObjectMeta: manifests.ObjectMeta{Name: "rs", Generation: 1}}
	rs.Spec.Replicas = two
	rs.Status = manifests.ReplicaSetStatus{ObservedGeneration: 1, ReadyReplicas: 1}
	for _, tc := range []struct {
		name string
		obj  manifests.Object
		want string
	}{
		{"deployment rolled out", dep(1, manifests.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}), HealthReady},
		{"deployment not observed", dep(2, manifests.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2}), HealthProgressing},
		{"deployment rolling", dep(1, manifests.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 1, AvailableReplicas: 2}), HealthProgressing},
		{"deployment past deadline", dep(1, manifests.DeploymentStatus{ObservedGeneration: 1, Conditions: []manifests.Condition{{Type: "Progressing", Status: manifests.ConditionFalse, Reason: controllers.ReasonProgressDeadlineExceeded}}}), HealthDegraded},
		{"pod ready", pod(manifests.PodRunning, true, ""), HealthReady},
		{"pod starting", pod(manifests.PodPending, false, "ContainerCreating"), HealthProgressing},
		{"pod crash-looping", pod(manifests.PodRunning, false, "CrashLoopBackOff"), HealthDegraded},
		{"pod image missing", pod(manifests.PodPending, false, "ErrImageNeverPull"), HealthDegraded},
		{"pod succeeded", pod(manifests.PodSucceeded, false, ""), HealthReady},
		{"pod failed", pod(manifests.PodFailed, false, ""), HealthDegraded},
		{"job running", job("", false), HealthProgressing},
		{"job complete", job("Complete", false), HealthReady},
		{"job failed", job("Failed", false), HealthDegraded},
		{"job suspended", job("", true), HealthReady},
		{"replicaset short", rs, HealthProgressing},
		{"configmap", &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "c"}}, HealthReady},
	} {
		if got, msg := ObjectHealth(tc.obj); got != tc.want {
			t.Errorf("%s: %s (%s), want %s", tc.name, got, msg, tc.want)
		} else if got != HealthReady && msg == "" {
			t.Errorf("%s: %s without a message", tc.name, got)
		}
	}
}

func TestSourceHealth(t *testing.T) {
	ready := &manifests.ConfigMap{ObjectMeta: manifests.ObjectMeta{Name: "c"}}
	crashing := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "bad"}}
	crashing.Status.ContainerStatuses = []manifests.ContainerStatus{{Name: "c", State: manifests.ContainerState{Waiting: &manifests.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}}
	starting := &manifests.Pod{ObjectMeta: manifests.ObjectMeta{Name: "new"}}
	for _, tc := range []struct {
		name    string
		lastErr string
		applied bool
		objs    []manifests.Object
		want    string
	}{
		{"all ready", "", true, []manifests.Object{ready}, HealthReady},
		{"empty", "", true, nil, HealthReady},
		{"nothing applied yet", "", false, nil, HealthProgressing},
		{"worst object wins", "", true, []manifests.Object{ready, starting, crashing}, HealthDegraded},
		{"starting", "", true, []manifests.Object{ready, starting}, HealthProgressing},
		{"rejected revision", "a.yaml:1:1: bad", true, []manifests.Object{ready}, HealthFailed},
		{"never applied, failing", "fetch: no route", false, nil, HealthFailed},
	} {
		if got, msg := SourceHealth(tc.lastErr, tc.applied, tc.objs); got != tc.want || msg == "" {
			t.Errorf("%s: %s (%q), want %s with a message", tc.name, got, msg, tc.want)
		}
	}
}

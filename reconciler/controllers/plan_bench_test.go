package controllers

import (
	"fmt"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// Micro-benchmarks of the pure planners, at sizes beyond what one
// reconcile usually sees; `make bench` runs and reports them.

func BenchmarkPlanRollingUpdate(b *testing.B) {
	old := make([]RSState, 10)
	for i := range old {
		old[i] = RSState{Replicas: 100, Available: 90}
	}
	for b.Loop() {
		PlanRollingUpdate(1000, 250, 250, RSState{Replicas: 10, Available: 5}, old)
	}
}

func BenchmarkPlanStatefulSet(b *testing.B) {
	s := StatefulSetState{Replicas: 1000, CurrentRevision: "a", UpdateRevision: "b", Pods: make([]StatefulPod, 1000)}
	for i := range s.Pods {
		rev := "a"
		if i > 900 {
			rev = "b"
		}
		s.Pods[i] = StatefulPod{Ordinal: i, Revision: rev, Ready: true, Available: true}
	}
	for b.Loop() {
		PlanStatefulSet(s)
	}
}

func BenchmarkPlanDaemonSet(b *testing.B) {
	s := DaemonSetState{UpdateRevision: "b", MaxUnavailable: 10, Nodes: make([]DaemonNode, 1000)}
	for i := range s.Nodes {
		s.Nodes[i] = DaemonNode{Name: fmt.Sprintf("n%04d", i), Placement: DaemonRun,
			Pods: []DaemonPod{{Name: fmt.Sprintf("p%04d", i), Revision: "a", Ready: true, Available: true}}}
	}
	for b.Loop() {
		PlanDaemonSet(s)
	}
}

func BenchmarkPlanJob(b *testing.B) {
	completions := int32(1000)
	start := time.Unix(1_700_000_000, 0)
	in := JobInput{Completions: &completions, Parallelism: 50, BackoffLimit: 6, RestartPolicy: "Never",
		Active: 40, Succeeded: 500, Failed: 2, StartTime: &start, Now: start.Add(time.Hour)}
	for b.Loop() {
		PlanJob(in)
	}
}

func BenchmarkPlanCronJob(b *testing.B) {
	s, err := cron.ParseStandard("*/5 * * * *")
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	last := now.Add(-3 * time.Hour)
	in := CronInput{Schedule: s, Now: now, Created: now.Add(-24 * time.Hour), LastSchedule: &last, Policy: "Allow"}
	for b.Loop() {
		PlanCronJob(in)
	}
}

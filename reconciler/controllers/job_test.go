package controllers

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/capstan-io/capstan/manifests"
)

func TestPlanJob(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	three := manifests.Ptr(int32(3))
	minute := manifests.Ptr(time.Minute)
	base := JobInput{Completions: three, Parallelism: 2, BackoffLimit: 6, RestartPolicy: manifests.RestartNever, Now: t0, StartTime: &t0}
	with := func(f func(*JobInput)) JobInput { in := base; f(&in); return in }
	tests := []struct {
		name string
		in   JobInput
		want JobPlan
	}{
		{"starts parallelism pods", base, JobPlan{Create: 2}},
		{"runs at parallelism", with(func(in *JobInput) { in.Active = 2 }), JobPlan{}},
		{"last completion needs one pod", with(func(in *JobInput) { in.Active = 0; in.Succeeded = 2 }), JobPlan{Create: 1}},
		{"no more pods than completions missing", with(func(in *JobInput) { in.Active = 2; in.Succeeded = 2 }), JobPlan{Delete: 1}},
		{"complete", with(func(in *JobInput) { in.Succeeded = 3 }), JobPlan{Finish: "Complete"}},
		{"complete deletes stragglers", with(func(in *JobInput) { in.Succeeded = 3; in.Active = 1 }), JobPlan{Finish: "Complete", Delete: 1}},
		{"completions 0 is complete at once", with(func(in *JobInput) { in.Completions = manifests.Ptr(int32(0)) }), JobPlan{Finish: "Complete"}},
		{"parallelism 0 runs nothing", with(func(in *JobInput) { in.Parallelism = 0 }), JobPlan{}},
		{"work queue starts parallelism", with(func(in *JobInput) { in.Completions = nil; in.Parallelism = 3 }), JobPlan{Create: 3}},
		{"work queue: a success stops new pods", with(func(in *JobInput) { in.Completions = nil; in.Parallelism = 3; in.Active = 1; in.Succeeded = 1 }), JobPlan{}},
		{"work queue: done when one succeeded and none active", with(func(in *JobInput) { in.Completions = nil; in.Succeeded = 1 }), JobPlan{Finish: "Complete"}},
		{"a failure waits its back-off", with(func(in *JobInput) { in.Failed, in.FailuresSinceSuccess, in.LastFailure = 1, 1, t0.Add(-4*time.Second) }), JobPlan{Wait: 6 * time.Second}},
		{"back-off doubles", with(func(in *JobInput) { in.Failed, in.FailuresSinceSuccess, in.LastFailure = 2, 2, t0.Add(-4*time.Second) }), JobPlan{Wait: 16 * time.Second}},
		{"back-off over: replaced", with(func(in *JobInput) { in.Failed, in.FailuresSinceSuccess, in.LastFailure = 1, 1, t0.Add(-10*time.Second) }), JobPlan{Create: 2}},
		{"back-off limit reached, not exceeded", with(func(in *JobInput) {
			in.BackoffLimit, in.Failed, in.FailuresSinceSuccess, in.LastFailure = 1, 1, 1, t0.Add(-time.Hour)
		}), JobPlan{Create: 2}},
		{"back-off limit exceeded", with(func(in *JobInput) { in.BackoffLimit, in.Failed, in.Active = 1, 2, 1 }),
			JobPlan{Finish: "Failed", Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", Delete: 1}},
		{"backoffLimit 0 fails on the first failure", with(func(in *JobInput) { in.BackoffLimit, in.Failed = 0, 1 }),
			JobPlan{Finish: "Failed", Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit"}},
		{"OnFailure: restarts below the limit", with(func(in *JobInput) {
			in.RestartPolicy, in.BackoffLimit, in.Active, in.Restarts = manifests.RestartOnFailure, 2, 2, 1
		}), JobPlan{}},
		{"OnFailure: restarts reach the limit", with(func(in *JobInput) {
			in.RestartPolicy, in.BackoffLimit, in.Active, in.Restarts = manifests.RestartOnFailure, 2, 2, 2
		}),
			JobPlan{Finish: "Failed", Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", Delete: 2}},
		{"OnFailure: limit 0 fails on the first restart", with(func(in *JobInput) {
			in.RestartPolicy, in.BackoffLimit, in.Active, in.Restarts = manifests.RestartOnFailure, 0, 1, 1
		}),
			JobPlan{Finish: "Failed", Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", Delete: 1}},
		{"Never: restarts do not count", with(func(in *JobInput) { in.BackoffLimit, in.Active, in.Restarts = 0, 2, 5 }), JobPlan{}},
		{"deadline ahead: look again then", with(func(in *JobInput) { in.ActiveDeadline, in.Active, in.Now = minute, 2, t0.Add(20*time.Second) }), JobPlan{Wait: 40 * time.Second}},
		{"deadline passed", with(func(in *JobInput) { in.ActiveDeadline, in.Active, in.Now = minute, 2, t0.Add(time.Minute) }),
			JobPlan{Finish: "Failed", Reason: "DeadlineExceeded", Message: "Job was active longer than specified deadline", Delete: 2}},
		{"suspended: deletes active, no deadline", with(func(in *JobInput) {
			in.Suspend, in.ActiveDeadline, in.Active, in.Now = true, minute, 2, t0.Add(time.Hour)
		}), JobPlan{Delete: 2}},
		{"complete wins over a late failure count", with(func(in *JobInput) { in.Succeeded, in.Failed, in.BackoffLimit = 3, 5, 1 }), JobPlan{Finish: "Complete"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PlanJob(tt.in); got != tt.want {
				t.Fatalf("PlanJob = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestJobBackoff(t *testing.T) {
	for n, want := range map[int32]time.Duration{0: 0, 1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 6: 320 * time.Second, 7: 6 * time.Minute, 40: 6 * time.Minute} {
		if got := JobBackoff(n); got != want {
			t.Errorf("JobBackoff(%d) = %s, want %s", n, got, want)
		}
	}
}

// TestPlanJobProperties runs random Jobs to their end through the planner:
// pods start, succeed or fail at random and time passes. Whatever happens,
// active pods never exceed parallelism, succeeded pods never exceed
// completions, a suspended Job runs nothing, and every Job finishes.
func TestPlanJobProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		in := JobInput{
			Parallelism:   rng.Int32N(5),
			BackoffLimit:  rng.Int32N(4),
			RestartPolicy: []string{manifests.RestartNever, manifests.RestartOnFailure}[rng.IntN(2)],
			Now:           time.Unix(1_700_000_000, 0),
		}
		if rng.IntN(4) > 0 {
			in.Completions = manifests.Ptr(rng.Int32N(6))
		}
		start := in.Now
		in.StartTime = &start
		if rng.IntN(3) == 0 {
			in.ActiveDeadline = manifests.Ptr(time.Duration(1+rng.IntN(600)) * time.Second)
		}
		suspendedFor := rng.IntN(3) // steps the Job is suspended at first
		finished := false
		for step := 0; step < 2000 && !finished; step++ {
			in.Suspend = step < suspendedFor
			if in.Suspend {
				t := in.Now
				in.StartTime = &t // resuming restarts the deadline's clock
			}
			p := PlanJob(in)
			if p.Create > 0 && p.Delete > 0 {
				t.Fatalf("job %d: creates and deletes at once: %+v from %+v", i, p, in)
			}
			if p.Delete > in.Active {
				t.Fatalf("job %d: deletes %d of %d active", i, p.Delete, in.Active)
			}
			if p.Finish != "" {
				if p.Create > 0 || p.Delete != in.Active {
					t.Fatalf("job %d: a finished Job must create nothing and delete every active pod: %+v from %+v", i, p, in)
				}
				finished = true
				break
			}
			in.Active += p.Create - p.Delete
			if in.Active > in.Parallelism {
				t.Fatalf("job %d: %d active over parallelism %d", i, in.Active, in.Parallelism)
			}
			if in.Suspend && in.Active != 0 {
				t.Fatalf("job %d: suspended with %d active", i, in.Active)
			}
			if in.Completions != nil && in.Active+in.Succeeded > *in.Completions {
				t.Fatalf("job %d: %d active + %d succeeded over %d completions", i, in.Active, in.Succeeded, *in.Completions)
			}
			// The pods run: some succeed, some fail, some restart.
			for range in.Active {
				switch rng.IntN(6) {
				case 0:
					in.Active--
					in.Succeeded++
					in.FailuresSinceSuccess = 0
				case 1:
					if in.RestartPolicy == manifests.RestartOnFailure {
						in.Restarts++
					} else {
						in.Active--
						in.Failed++
						in.FailuresSinceSuccess++
						in.LastFailure = in.Now
					}
				}
			}
			if in.Completions != nil && in.Succeeded > *in.Completions {
				t.Fatalf("job %d: %d succeeded over %d completions", i, in.Succeeded, *in.Completions)
			}
			if p.Wait > 0 {
				in.Now = in.Now.Add(p.Wait)
			} else {
				in.Now = in.Now.Add(time.Second)
			}
		}
		if !finished && in.Parallelism > 0 {
			t.Fatalf("job %d never finished: %+v", i, in)
		}
	}
}

package controllers

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// pods makes n ready pods requesting req, with the given usages (fewer
// usages than pods: the rest have no sample).
func hpaPods(n int, req int64, usage ...int64) []PodMetric {
	out := make([]PodMetric, n)
	for i := range out {
		out[i] = PodMetric{Ready: true, Request: req}
		if i < len(usage) {
			out[i].Usage, out[i].HasUsage = usage[i], true
		}
	}
	return out
}

func TestRecommendReplicas(t *testing.T) {
	cpu50 := MetricGoal{Utilization: 50}
	tests := []struct {
		name     string
		current  int32
		pods     []PodMetric
		goal     MetricGoal
		want     int32
		wantUtil int32
		err      error
	}{
		{"at target", 2, hpaPods(2, 100, 50, 50), cpu50, 2, 50, nil},
		{"within tolerance up", 2, hpaPods(2, 100, 54, 54), cpu50, 2, 54, nil},
		{"within tolerance down", 2, hpaPods(2, 100, 46, 46), cpu50, 2, 46, nil},
		{"double the load: double the pods", 2, hpaPods(2, 100, 100, 100), cpu50, 4, 100, nil},
		{"ceil", 3, hpaPods(3, 100, 60, 60, 60), cpu50, 4, 60, nil}, // 3*1.2 = 3.6
		{"idle: scale down", 4, hpaPods(4, 100, 10, 10, 10, 10), cpu50, 1, 10, nil},
		{"utilisation is of the summed requests", 2, []PodMetric{{Ready: true, Request: 100, Usage: 100, HasUsage: true}, {Ready: true, Request: 300, Usage: 100, HasUsage: true}}, cpu50, 2, 50, nil},
		// Missing samples: 100% when scaling down, 0 when scaling up.
		{"missing pods can stop a scale-down", 4, hpaPods(4, 100, 10, 10), cpu50, 4, 10, nil},                   // (10+10+100+100)/400 = 55%: the other way
		{"missing pods damp a scale-down", 4, hpaPods(4, 100, 10, 10), MetricGoal{Utilization: 80}, 3, 10, nil}, // 220/400 = 55% of 80%: ceil(4*0.69)
		{"missing pods damp a scale-up", 4, hpaPods(4, 100, 100, 100), cpu50, 4, 100, nil},                      // (200+0+0)/400 = 50%: within tolerance
		{"missing pods, scale-up still", 2, hpaPods(4, 100, 200, 200), cpu50, 8, 200, nil},                      // (400)/400=100% -> ratio 2 -> 8
		// Unready pods count at 0 when scaling up only.
		{"unready pods damp a scale-up", 2, append(hpaPods(1, 100, 100), PodMetric{Request: 100}), cpu50, 2, 100, nil},
		{"unready pods ignored scaling down", 2, append(hpaPods(1, 100, 10), PodMetric{Request: 100}), cpu50, 1, 10, nil},
		{"ignored pods count for nothing", 2, append(hpaPods(2, 100, 50, 50), PodMetric{Ignored: true}), cpu50, 2, 50, nil},
		{"average value", 2, hpaPods(2, 0, 300, 300), MetricGoal{AverageValue: 100}, 6, 0, nil},
		{"no samples", 2, hpaPods(2, 100), cpu50, 0, 0, ErrNoMetrics},
		{"no request", 2, hpaPods(2, 0, 10, 10), cpu50, 0, 0, ErrMissingRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RecommendReplicas(tt.current, tt.pods, tt.goal, HPATolerance)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if got.Replicas != tt.want || got.Utilization != tt.wantUtil {
				t.Fatalf("got %+v, want %d replicas at %d%%", got, tt.want, tt.wantUtil)
			}
		})
	}
}

// TestRecommendReplicasProperties: with every pod measured, the
// recommendation moves in the direction of the load and only beyond the
// tolerance; with pods unmeasured or unready it never moves against the
// direction the measured pods ask for.
func TestRecommendReplicasProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 20000 {
		n := 1 + rng.IntN(10)
		current := int32(n)
		goal := MetricGoal{Utilization: int32(10 + rng.IntN(90))}
		pods := make([]PodMetric, n)
		var usage, request int64
		measuredReady := 0
		for j := range pods {
			p := PodMetric{Ready: rng.IntN(5) > 0, Request: int64(100 + rng.IntN(900))}
			if rng.IntN(5) > 0 {
				p.Usage, p.HasUsage = int64(rng.IntN(2000)), true
			}
			if p.Ready && p.HasUsage {
				usage += p.Usage
				request += p.Request
				measuredReady++
			}
			pods[j] = p
		}
		rec, err := RecommendReplicas(current, pods, goal, HPATolerance)
		if measuredReady == 0 {
			if !errors.Is(err, ErrNoMetrics) {
				t.Fatalf("case %d: no ready samples, err %v", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		ratio := float64(usage*100) / float64(request) / float64(goal.Utilization)
		all := measuredReady == n
		switch {
		case rec.Replicas < 0:
			t.Fatalf("case %d: negative", i)
		case ratio > 1 && rec.Replicas < current, ratio < 1 && rec.Replicas > current:
			t.Fatalf("case %d: ratio %.2f but %d -> %d (%+v)", i, ratio, current, rec.Replicas, pods)
		case all && ratio > 1+HPATolerance && rec.Replicas <= current:
			t.Fatalf("case %d: all measured at ratio %.2f, no scale-up from %d", i, ratio, current)
		case all && ratio >= 1-HPATolerance && ratio <= 1+HPATolerance && rec.Replicas != current:
			t.Fatalf("case %d: within tolerance (%.2f) but %d -> %d", i, ratio, current, rec.Replicas)
		}
	}
}

func TestStabilizeReplicas(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	recs := []TimedReplicas{{t0.Add(-400 * time.Second), 9}, {t0.Add(-200 * time.Second), 6}, {t0.Add(-10 * time.Second), 4}}
	tests := []struct {
		name             string
		desired, current int32
		up, down         time.Duration
		want             int32
	}{
		{"scale-down held at the window's highest", 2, 6, 0, 300 * time.Second, 6},
		{"a shorter window lets it go lower", 2, 6, 0, 100 * time.Second, 4},
		{"no window: straight down", 2, 6, 0, 0, 2},
		{"scale-up at once", 8, 6, 0, 300 * time.Second, 8},
		{"scale-up window holds it at the lowest", 8, 3, 60 * time.Second, 300 * time.Second, 4},
		{"never beyond current in the wrong direction", 5, 5, 0, 300 * time.Second, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, kept := StabilizeReplicas(recs, tt.desired, tt.current, t0, tt.up, tt.down)
			if got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
			last := kept[len(kept)-1]
			if last.Replicas != tt.desired || !last.At.Equal(t0) {
				t.Fatalf("the new recommendation is not kept: %+v", kept)
			}
			for _, r := range kept {
				if r.At.Before(t0.Add(-max(tt.up, tt.down))) {
					t.Fatalf("kept a recommendation older than both windows: %+v", kept)
				}
			}
		})
	}
}

// TestStabilizeReplicasProperty: a scale-down never goes below any
// recommendation of the scale-down window.
func TestStabilizeReplicasProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 5000 {
		now := time.Unix(1_700_000_000, 0)
		down := time.Duration(rng.IntN(600)) * time.Second
		var recs []TimedReplicas
		for range rng.IntN(8) {
			recs = append(recs, TimedReplicas{now.Add(-time.Duration(rng.IntN(900)) * time.Second), rng.Int32N(20)})
		}
		desired, current := rng.Int32N(20), rng.Int32N(20)
		got, _ := StabilizeReplicas(recs, desired, current, now, 0, down)
		if got < min(desired, current) || got > max(desired, current) {
			t.Fatalf("%d outside desired %d and current %d", got, desired, current)
		}
		if got < current {
			for _, r := range recs {
				if r.At.After(now.Add(-down)) && got < min(r.Replicas, current) {
					t.Fatalf("scaled down to %d below %d recommended %s ago (window %s)", got, r.Replicas, now.Sub(r.At), down)
				}
			}
		}
	}
}

func TestLimitReplicas(t *testing.T) {
	tests := []struct {
		desired, current, min, max int32
		want                       int32
		reason                     string
	}{
		{5, 3, 1, 10, 5, "DesiredWithinRange"},
		{20, 3, 1, 10, 6, "ScaleUpLimit"},
		{20, 1, 1, 10, 4, "ScaleUpLimit"},
		{20, 8, 1, 10, 10, "TooManyReplicas"},
		{0, 3, 2, 10, 2, "TooFewReplicas"},
		{2, 3, 2, 10, 2, "DesiredWithinRange"},
	}
	for _, tt := range tests {
		got, reason, _ := LimitReplicas(tt.desired, tt.current, tt.min, tt.max)
		if got != tt.want || reason != tt.reason {
			t.Errorf("LimitReplicas(%d, %d, %d, %d) = %d %s, want %d %s", tt.desired, tt.current, tt.min, tt.max, got, reason, tt.want, tt.reason)
		}
	}
	// Within bounds whenever the current count is.
	rng := rand.New(rand.NewPCG(7, 8))
	for range 5000 {
		lo := 1 + rng.Int32N(5)
		hi := lo + rng.Int32N(20)
		current := lo + rng.Int32N(hi-lo+1)
		got, _, _ := LimitReplicas(rng.Int32N(50), current, lo, hi)
		if got < lo || got > hi || got > max(2*current, 4) {
			t.Fatalf("%d outside [%d, %d] or too fast from %d", got, lo, hi, current)
		}
	}
}

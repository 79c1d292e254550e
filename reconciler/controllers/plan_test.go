package controllers

import (
	"math/rand/v2"
	"testing"
)

func TestPlanRollingUpdateTable(t *testing.T) {
	cases := []struct {
		name                    string
		desired, surge, unavail int32
		cur                     RSState
		old                     []RSState
		wantNew                 int32
		wantOld                 []int32
	}{
		{"fresh scale up", 3, 1, 0, RSState{0, 0}, nil, 3, []int32{}},
		{"surge first", 3, 1, 0, RSState{0, 0}, []RSState{{3, 3}}, 1, []int32{3}},
		{"wait for new to be available", 3, 1, 0, RSState{1, 0}, []RSState{{3, 3}}, 1, []int32{3}},
		{"new available: shrink old by one", 3, 1, 0, RSState{1, 1}, []RSState{{3, 3}}, 1, []int32{2}},
		{"unavailable old goes first", 3, 0, 1, RSState{0, 0}, []RSState{{3, 1}}, 0, []int32{2}},
		{"scale down new", 2, 1, 0, RSState{4, 4}, nil, 2, []int32{}},
		{"done", 3, 1, 0, RSState{3, 3}, []RSState{{0, 0}}, 3, []int32{0}},
		{"both zero acts as unavailable one", 2, 0, 0, RSState{0, 0}, []RSState{{2, 2}}, 0, []int32{1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gotNew, gotOld := PlanRollingUpdate(c.desired, c.surge, c.unavail, c.cur, c.old)
			if gotNew != c.wantNew || len(gotOld) != len(c.wantOld) {
				t.Fatalf("got new=%d old=%v, want new=%d old=%v", gotNew, gotOld, c.wantNew, c.wantOld)
			}
			for i := range gotOld {
				if gotOld[i] != c.wantOld[i] {
					t.Fatalf("got old=%v, want %v", gotOld, c.wantOld)
				}
			}
		})
	}
}

// TestPlanRollingUpdateProperties simulates whole rollouts with pods that
// become available at random and checks the bounds at every step and that
// each rollout completes.
func TestPlanRollingUpdateProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 2000 {
		desired := rng.Int32N(8)
		surge := rng.Int32N(3)
		unavail := rng.Int32N(3)
		if surge == 0 && unavail == 0 {
			surge = 1
		}
		cur := RSState{}
		old := []RSState{{Replicas: rng.Int32N(8)}}
		old[0].Available = old[0].Replicas
		for step := 0; ; step++ {
			if step > 500 {
				t.Fatalf("iter %d: rollout did not finish: desired=%d surge=%d unavail=%d cur=%+v old=%+v", iter, desired, surge, unavail, cur, old)
			}
			n, o := PlanRollingUpdate(desired, surge, unavail, cur, old)
			total := n + o[0]
			prevTotal := cur.Replicas + old[0].Replicas
			if total > max(desired+surge, prevTotal) {
				t.Fatalf("iter %d: total %d exceeds desired+surge %d", iter, total, desired+surge)
			}
			// Availability never drops below the floor because of a plan
			// (only pods that were not available are removed past it).
			availAfter := min(cur.Available, n) + min(old[0].Available, o[0])
			floor := min(desired-unavail, cur.Available+old[0].Available)
			if availAfter < floor {
				t.Fatalf("iter %d: availability %d fell below %d", iter, availAfter, floor)
			}
			cur.Replicas, old[0].Replicas = n, o[0]
			old[0].Available = min(old[0].Available, o[0])
			// Some new pods become available.
			if cur.Available < cur.Replicas {
				cur.Available += rng.Int32N(cur.Replicas-cur.Available) + 1
			}
			cur.Available = min(cur.Available, cur.Replicas)
			if cur.Replicas == desired && cur.Available == desired && old[0].Replicas == 0 {
				break
			}
		}
	}
}

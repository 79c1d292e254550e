package controllers

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func dpod(name, rev string, avail bool) DaemonPod {
	return DaemonPod{Name: name, Revision: rev, Ready: avail, Available: avail}
}

func TestPlanDaemonSetTable(t *testing.T) {
	create := func(node string) DaemonAction { return DaemonAction{Create: true, Node: node} }
	del := func(node, pod, why string) DaemonAction { return DaemonAction{Node: node, Pod: pod, Reason: why} }
	cases := []struct {
		name string
		in   DaemonSetState
		want []DaemonAction
	}{
		{"one pod per node", DaemonSetState{UpdateRevision: "r1", Nodes: []DaemonNode{{Name: "b", Placement: DaemonRun}, {Name: "a", Placement: DaemonRun}}},
			[]DaemonAction{create("a"), create("b")}},
		{"not on ineligible or kept nodes", DaemonSetState{UpdateRevision: "r1", Nodes: []DaemonNode{{Name: "a", Placement: DaemonNone}, {Name: "b", Placement: DaemonKeep}}}, nil},
		{"a pod on a kept node stays", DaemonSetState{UpdateRevision: "r1", Nodes: []DaemonNode{{Name: "a", Placement: DaemonKeep, Pods: []DaemonPod{dpod("p", "r1", false)}}}}, nil},
		{"a node that left loses its pod", DaemonSetState{UpdateRevision: "r1", Nodes: []DaemonNode{{Name: "gone", Placement: DaemonNone, Pods: []DaemonPod{dpod("p", "r1", true)}}}},
			[]DaemonAction{del("gone", "p", "node not eligible")}},
		{"duplicates: keep the oldest", DaemonSetState{UpdateRevision: "r1", Nodes: []DaemonNode{{Name: "a", Placement: DaemonRun,
			Pods: []DaemonPod{{Name: "new", Revision: "r1", Available: true, Created: 20}, {Name: "old", Revision: "r1", Available: true, Created: 10}}}}},
			[]DaemonAction{del("a", "new", "excess")}},
		{"failed pod: deleted, replaced later", DaemonSetState{UpdateRevision: "r1", Nodes: []DaemonNode{{Name: "a", Placement: DaemonRun,
			Pods: []DaemonPod{{Name: "p", Revision: "r1", Failed: true}}}}}, []DaemonAction{del("a", "p", "failed")}},
		{"no new pod while one terminates", DaemonSetState{UpdateRevision: "r1", Nodes: []DaemonNode{{Name: "a", Placement: DaemonRun,
			Pods: []DaemonPod{{Name: "p", Revision: "r1", Terminating: true}}}}}, nil},
		{"rolling update: one node at a time", DaemonSetState{UpdateRevision: "r2", MaxUnavailable: 1, Nodes: []DaemonNode{
			{Name: "a", Placement: DaemonRun, Pods: []DaemonPod{dpod("pa", "r1", true)}},
			{Name: "b", Placement: DaemonRun, Pods: []DaemonPod{dpod("pb", "r1", true)}}}},
			[]DaemonAction{del("a", "pa", "update")}},
		{"rolling update: wait while a node is unavailable", DaemonSetState{UpdateRevision: "r2", MaxUnavailable: 1, Nodes: []DaemonNode{
			{Name: "a", Placement: DaemonRun, Pods: []DaemonPod{dpod("pa", "r2", false)}},
			{Name: "b", Placement: DaemonRun, Pods: []DaemonPod{dpod("pb", "r1", true)}}}}, nil},
		{"rolling update: unavailable old pods go regardless", DaemonSetState{UpdateRevision: "r2", MaxUnavailable: 1, Nodes: []DaemonNode{
			{Name: "a", Placement: DaemonRun, Pods: []DaemonPod{dpod("pa", "r1", false)}},
			{Name: "b", Placement: DaemonRun, Pods: []DaemonPod{dpod("pb", "r1", false)}}}},
			[]DaemonAction{del("a", "pa", "update"), del("b", "pb", "update")}},
		{"rolling update: maxUnavailable 2", DaemonSetState{UpdateRevision: "r2", MaxUnavailable: 2, Nodes: []DaemonNode{
			{Name: "a", Placement: DaemonRun, Pods: []DaemonPod{dpod("pa", "r1", true)}},
			{Name: "b", Placement: DaemonRun, Pods: []DaemonPod{dpod("pb", "r1", true)}},
			{Name: "c", Placement: DaemonRun, Pods: []DaemonPod{dpod("pc", "r1", true)}}}},
			[]DaemonAction{del("a", "pa", "update"), del("b", "pb", "update")}},
		{"OnDelete leaves old pods", DaemonSetState{UpdateRevision: "r2", OnDelete: true, Nodes: []DaemonNode{
			{Name: "a", Placement: DaemonRun, Pods: []DaemonPod{dpod("pa", "r1", true)}}}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PlanDaemonSet(c.in)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestPlanDaemonSetProperties runs random clusters through rollouts with
// nodes coming and going and checks on every plan: never a second pod on
// a node, nothing made where it does not belong, the update never takes
// more nodes out than allowed; and that each converges to one updated,
// available pod per eligible node.
func TestPlanDaemonSetProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	seq := 0
	for iter := range 2000 {
		s := DaemonSetState{UpdateRevision: []string{"r1", "r2"}[rng.IntN(2)], OnDelete: rng.IntN(6) == 0, MaxUnavailable: rng.IntN(3)}
		type node struct {
			pl   DaemonPlacement
			pods map[string]DaemonPod
		}
		world := map[string]*node{}
		for i := range rng.IntN(6) {
			n := &node{pl: DaemonPlacement(rng.IntN(3)), pods: map[string]DaemonPod{}}
			for range rng.IntN(3) {
				seq++
				name := fmt.Sprintf("p%d", seq)
				n.pods[name] = DaemonPod{Name: name, Revision: "r1", Available: rng.IntN(2) == 0, Created: int64(seq)}
			}
			world[fmt.Sprintf("n%d", i)] = n
		}
		converged := false
		for step := 0; step < 300; step++ {
			if step == 10 && rng.IntN(2) == 0 { // a node joins
				world[fmt.Sprintf("late%d", step)] = &node{pl: DaemonRun, pods: map[string]DaemonPod{}}
			}
			s.Nodes = s.Nodes[:0]
			unavailBefore := 0
			for name, n := range world {
				dn := DaemonNode{Name: name, Placement: n.pl}
				avail := false
				for _, p := range n.pods {
					dn.Pods = append(dn.Pods, p)
					avail = avail || (p.Available && !p.Terminating && !p.Failed)
				}
				if (n.pl == DaemonRun || (n.pl == DaemonKeep && hasLive(n.pods))) && !avail {
					unavailBefore++
				}
				s.Nodes = append(s.Nodes, dn)
			}
			acts := PlanDaemonSet(s)
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("iter %d step %d: state %+v plan %+v: %s", iter, step, s, acts, fmt.Sprintf(format, args...))
			}
			creates := map[string]int{}
			deleted := map[string]bool{}
			for _, a := range acts {
				n := world[a.Node]
				if a.Create {
					creates[a.Node]++
					if n.pl != DaemonRun {
						fail("created a pod on node %s placed %d", a.Node, n.pl)
					}
					for _, p := range n.pods {
						if !p.Failed {
							fail("created a pod on %s, which has %s", a.Node, p.Name)
						}
					}
					continue
				}
				if deleted[a.Pod] {
					fail("deleted %s twice", a.Pod)
				}
				deleted[a.Pod] = true
				if s.OnDelete && a.Reason == "update" {
					fail("OnDelete deleted for an update")
				}
			}
			for node, n := range creates {
				if n > 1 {
					fail("%d pods made on %s", n, node)
				}
			}
			// Nodes without an available pod after the plan: updates may
			// add up to MaxUnavailable, never more.
			unavailAfter := 0
			for _, n := range world {
				if n.pl == DaemonNone || (n.pl == DaemonKeep && !hasLive(n.pods)) {
					continue
				}
				avail := false
				for _, p := range n.pods {
					avail = avail || (p.Available && !p.Terminating && !p.Failed && !deleted[p.Name])
				}
				if !avail {
					unavailAfter++
				}
			}
			if unavailAfter > max(unavailBefore, max(s.MaxUnavailable, 1)) {
				fail("%d nodes unavailable after the plan (before %d, max %d)", unavailAfter, unavailBefore, s.MaxUnavailable)
			}
			if len(acts) == 0 && daemonConverged(s) {
				converged = true
				break
			}
			for _, a := range acts {
				n := world[a.Node]
				if a.Create {
					seq++
					name := fmt.Sprintf("p%d", seq)
					n.pods[name] = DaemonPod{Name: name, Revision: s.UpdateRevision, Created: int64(seq)}
				} else {
					p := n.pods[a.Pod]
					p.Terminating = true
					n.pods[a.Pod] = p
				}
			}
			for _, n := range world {
				for name, p := range n.pods {
					switch {
					case p.Terminating && rng.IntN(2) == 0:
						delete(n.pods, name)
					case !p.Terminating && !p.Available && !p.Failed && rng.IntN(2) == 0:
						p.Ready, p.Available = true, true
						n.pods[name] = p
					case step < 15 && rng.IntN(25) == 0:
						p.Failed, p.Available = true, false
						n.pods[name] = p
					}
				}
			}
		}
		if !converged {
			t.Fatalf("iter %d: did not converge: %+v", iter, s)
		}
	}
}

func daemonConverged(s DaemonSetState) bool {
	for _, n := range s.Nodes {
		switch n.Placement {
		case DaemonNone:
			if len(n.Pods) > 0 {
				return false
			}
		case DaemonRun:
			if len(n.Pods) != 1 || !n.Pods[0].Available || (!s.OnDelete && n.Pods[0].Revision != s.UpdateRevision) {
				return false
			}
		}
	}
	return true
}

// hasLive reports whether a node has a pod neither going nor failed: a
// kept node is owed availability only then.
func hasLive(pods map[string]DaemonPod) bool {
	for _, p := range pods {
		if !p.Terminating && !p.Failed {
			return true
		}
	}
	return false
}

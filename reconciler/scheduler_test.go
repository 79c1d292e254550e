package reconciler

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestFit(t *testing.T) {
	n := &NodeInfo{Name: "n", Ready: true, Labels: map[string]string{"disk": "ssd"}, AllocCPU: 1000, AllocMem: 1 << 30, AllocPods: 3,
		UsedCPU: 600, UsedMem: 512 << 20, Pods: 2, HostPorts: map[string]int{"tcp/80": 1}}
	cases := []struct {
		name string
		r    PodRequest
		want string
	}{
		{"fits", PodRequest{CPU: 400, Mem: 512 << 20}, ""},
		{"cpu", PodRequest{CPU: 401}, "insufficient cpu"},
		{"memory", PodRequest{Mem: 513 << 20}, "insufficient memory"},
		{"port", PodRequest{HostPorts: []string{"tcp/80"}}, "host port conflict"},
		{"other protocol is free", PodRequest{HostPorts: []string{"udp/80"}}, ""},
		{"selector", PodRequest{NodeSelector: map[string]string{"disk": "hdd"}}, "node selector mismatch"},
		{"selector ok", PodRequest{NodeSelector: map[string]string{"disk": "ssd"}}, ""},
	}
	for _, c := range cases {
		if got := Fit(n, c.r); got != c.want {
			t.Errorf("%s: Fit = %q, want %q", c.name, got, c.want)
		}
	}
	n.Ready = false
	if Fit(n, PodRequest{}) != "node not ready" {
		t.Error("a NotReady node fits")
	}
	n.Ready, n.Pods = true, 3
	if Fit(n, PodRequest{}) != "too many pods" {
		t.Error("a full node fits")
	}
}

// TestSchedulerProperties places random pods on random nodes and checks
// that every placement fits, that nothing is placed when nothing fits, and
// that replicas of one owner spread evenly over identical nodes.
func TestSchedulerProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for iter := range 200 {
		s := newScheduler(nil)
		nNodes := 1 + rng.IntN(6)
		for i := range nNodes {
			n := s.node(fmt.Sprintf("n%d", i))
			n.Ready = rng.IntN(5) > 0
			n.AllocCPU, n.AllocMem, n.AllocPods = 1000+rng.Int64N(3000), 1<<30, 110
			n.Labels = map[string]string{"zone": fmt.Sprint(rng.IntN(2))}
		}
		for range 50 {
			r := PodRequest{CPU: rng.Int64N(800), Mem: rng.Int64N(256 << 20)}
			if rng.IntN(4) == 0 {
				r.HostPorts = []string{fmt.Sprintf("tcp/%d", 8000+rng.IntN(3))}
			}
			if rng.IntN(4) == 0 {
				r.NodeSelector = map[string]string{"zone": "1"}
			}
			best, why := s.choose(r)
			anyFits := false
			for _, n := range s.nodes {
				if Fit(n, r) == "" {
					anyFits = true
				}
			}
			if best == "" {
				if anyFits || why == "" {
					t.Fatalf("iter %d: nothing chosen (%q) though a node fits", iter, why)
				}
				continue
			}
			n := s.nodes[best]
			if f := Fit(n, r); f != "" {
				t.Fatalf("iter %d: chose %s which does not fit: %s", iter, best, f)
			}
			n.UsedCPU += r.CPU
			n.UsedMem += r.Mem
			n.Pods++
			for _, p := range r.HostPorts {
				n.HostPorts[p]++
			}
		}
	}
}

func TestSchedulerSpreadsReplicas(t *testing.T) {
	s := newScheduler(nil)
	for i := range 4 {
		n := s.node(fmt.Sprintf("n%d", i))
		n.Ready, n.AllocCPU, n.AllocMem = true, 4000, 8<<30
	}
	for range 12 {
		r := PodRequest{CPU: 10, Owner: "rs-1"}
		best, _ := s.choose(r)
		n := s.nodes[best]
		n.UsedCPU += r.CPU
		n.Pods++
		s.addOwner("rs-1", n, 1)
	}
	for name, n := range s.nodes {
		if got := s.sameOwner("rs-1", n); got != 3 {
			t.Fatalf("node %s has %d replicas, want 3 on each of 4 nodes", name, got)
		}
	}
}

func BenchmarkSchedulerChoose(b *testing.B) {
	s := newScheduler(nil)
	for i := range 1000 {
		n := s.node(fmt.Sprintf("n%d", i))
		n.Ready, n.AllocCPU, n.AllocMem, n.AllocPods = true, 4000, 8<<30, 110
	}
	// Pods of 100 owners, each already spread over the nodes, as in the
	// scale benchmark.
	owners := make([]string, 100)
	for i := range owners {
		owners[i] = fmt.Sprintf("0b7f5a8e-1c2d-4e5f-8a9b-%012d", i)
		for _, n := range s.order {
			s.addOwner(owners[i], n, 1)
		}
	}
	i := 0
	for b.Loop() {
		r := PodRequest{CPU: 1, Mem: 1 << 20, Owner: owners[i%len(owners)]}
		best, _ := s.choose(r)
		s.nodes[best].UsedCPU += 1
		s.addOwner(r.Owner, s.nodes[best], 1)
		i++
	}
}

func TestFeasibleToFind(t *testing.T) {
	for _, c := range []struct{ nodes, want int }{{1, 1}, {100, 100}, {101, 100}, {1000, 420}, {5000, 500}, {10000, 500}, {100000, 5000}} {
		if got := feasibleToFind(c.nodes); got != c.want {
			t.Errorf("feasibleToFind(%d) = %d, want %d", c.nodes, got, c.want)
		}
	}
}

// TestSchedulerLargeClusterSpreads checks that scoring only part of a
// large cluster per pod still reaches every node and keeps one owner's
// replicas even: the search rotates, so a node left out of one search is
// in the next.
func TestSchedulerLargeClusterSpreads(t *testing.T) {
	s := newScheduler(nil)
	for i := range 1000 {
		n := s.node(fmt.Sprintf("n%04d", i))
		n.Ready, n.AllocCPU, n.AllocMem, n.AllocPods = true, 4000, 8<<30, 110
	}
	for range 3000 {
		r := PodRequest{CPU: 10, Owner: "rs-1"}
		best, why := s.choose(r)
		if best == "" {
			t.Fatalf("nothing chosen: %s", why)
		}
		n := s.nodes[best]
		n.UsedCPU += r.CPU
		n.Pods++
		s.addOwner("rs-1", n, 1)
	}
	lo, hi := 3000, 0
	for _, n := range s.nodes {
		lo, hi = min(lo, s.sameOwner("rs-1", n)), max(hi, s.sameOwner("rs-1", n))
	}
	if lo != 3 || hi != 3 {
		t.Fatalf("replicas per node range from %d to %d, want 3 on each of 1000 nodes", lo, hi)
	}
}

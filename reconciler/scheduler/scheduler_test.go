package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/capstan-io/capstan/manifests"
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
		s := New(nil, nil, nil, nil)
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
	s := New(nil, nil, nil, nil)
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
	s := New(nil, nil, nil, nil)
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
	s := New(nil, nil, nil, nil)
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

// TestSchedulerAccountsFromEvents drives the scheduler's accounting with
// random sequences of what the cache and the bind writes tell it, and
// checks after every step that each node counts exactly the pods a
// simple model puts there: a pod counts on the node the cache shows it
// bound to, unless it has finished; a pod the cache still shows pending
// counts where its bind was assumed, until the write fails or the cache
// shows the pod bound, finished or gone.
func TestSchedulerAccountsFromEvents(t *testing.T) {
	type modelPod struct {
		cached  *manifests.Pod // nil: not in the cache
		assumed string
		req     PodRequest // the request assumed
	}
	nodes := []string{"a", "b", "c"}
	rng := rand.New(rand.NewPCG(3, 5))
	for iter := range 300 {
		s := New(nil, nil, nil, nil)
		for _, name := range nodes {
			n := s.node(name)
			n.Ready, n.AllocCPU, n.AllocMem, n.AllocPods = true, 1<<20, 1<<40, 1000
		}
		pods := map[string]*modelPod{}
		event := func(key string, cur *manifests.Pod) {
			m := pods[key]
			old := m.cached
			m.cached = cur
			if m.assumed != "" && (cur == nil || cur.Spec.NodeName != "" || manifests.IsPodTerminal(cur)) {
				m.assumed = ""
			}
			s.account(key, old, cur)
		}
		pod := func(key, node string, phase, cpu string) *manifests.Pod {
			p := &manifests.Pod{}
			p.Name = key
			p.OwnerReferences = []manifests.OwnerReference{{UID: "rs-" + cpu, Controller: true}}
			p.Spec.NodeName = node
			p.Spec.Containers = []manifests.Container{{Name: "c", Resources: manifests.ResourceRequirements{Requests: manifests.ResourceList{"cpu": manifests.Quantity(cpu + "m")}}}}
			p.Status.Phase = phase
			return p
		}
		for step := range 60 {
			key := fmt.Sprintf("p%d", rng.IntN(6))
			m := pods[key]
			if m == nil {
				m = &modelPod{}
				pods[key] = m
			}
			cpu := []string{"100", "250"}[rng.IntN(2)]
			node := nodes[rng.IntN(len(nodes))]
			var what string
			switch op := rng.IntN(8); {
			case op == 0 || m.cached == nil:
				what = "created or updated pending"
				event(key, pod(key, "", manifests.PodPending, cpu))
			case op == 1 && m.assumed == "" && m.cached.Spec.NodeName == "" && !manifests.IsPodTerminal(m.cached):
				what = "assumed on " + node
				s.place(node, requestOf(m.cached))
				s.assumed.Set(key, placement{node: node, req: requestOf(m.cached)})
				m.assumed, m.req = node, requestOf(m.cached)
			case op == 2 && m.assumed != "":
				what = "bind landed on " + m.assumed
				landed := *m.cached
				landed.Spec.NodeName = m.assumed
				event(key, &landed)
			case op == 3 && m.assumed != "":
				what = "bind failed"
				s.bound(key, m.assumed, errors.New("conflict"))
				m.assumed = ""
			case op == 4:
				what = "bound by another to " + node
				event(key, pod(key, node, manifests.PodRunning, cpu))
			case op == 5:
				what = "finished"
				event(key, pod(key, m.cached.Spec.NodeName, manifests.PodSucceeded, cpu))
			case op == 6:
				what = "deleted"
				event(key, nil)
				delete(pods, key)
			default:
				what = "bind write returned"
				if m.assumed != "" {
					s.bound(key, m.assumed, nil)
				}
			}
			want := map[string]int64{}
			wantPods := map[string]int64{}
			wantOwner := map[string]map[string]int{}
			for _, m := range pods {
				var on string
				var r PodRequest
				switch {
				case m.cached != nil && counted(m.cached) != "":
					on, r = m.cached.Spec.NodeName, requestOf(m.cached)
				case m.assumed != "":
					on, r = m.assumed, m.req
				default:
					continue
				}
				want[on] += r.CPU
				wantPods[on]++
				if wantOwner[r.Owner] == nil {
					wantOwner[r.Owner] = map[string]int{}
				}
				wantOwner[r.Owner][on]++
			}
			for _, name := range nodes {
				n := s.nodes[name]
				if n.UsedCPU != want[name] || n.Pods != wantPods[name] {
					t.Fatalf("iter %d step %d (%s %s): node %s counts %dm in %d pods, want %dm in %d", iter, step, key, what, name, n.UsedCPU, n.Pods, want[name], wantPods[name])
				}
				for _, owner := range []string{"rs-100", "rs-250"} {
					if got := s.sameOwner(owner, n); got != wantOwner[owner][name] {
						t.Fatalf("iter %d step %d (%s %s): node %s counts %d pods of %s, want %d", iter, step, key, what, name, got, owner, wantOwner[owner][name])
					}
				}
			}
		}
		if s.assumed.Len() > len(pods) {
			t.Fatalf("iter %d: %d assumptions for %d pods", iter, s.assumed.Len(), len(pods))
		}
	}
}

package controllers

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

func ready(ord int, rev string) StatefulPod {
	return StatefulPod{Ordinal: ord, Revision: rev, Ready: true, Available: true}
}

func TestPlanStatefulSetTable(t *testing.T) {
	create := func(ord int, rev string) StatefulAction {
		return StatefulAction{Create: true, Ordinal: ord, Revision: rev}
	}
	del := func(ord int, why string) StatefulAction { return StatefulAction{Ordinal: ord, Reason: why} }
	cases := []struct {
		name string
		in   StatefulSetState
		want []StatefulAction
	}{
		{"ordered: first pod", StatefulSetState{Replicas: 3, UpdateRevision: "r1"}, []StatefulAction{create(0, "r1")}},
		{"ordered: wait for 0 to be ready", StatefulSetState{Replicas: 3, UpdateRevision: "r1",
			Pods: []StatefulPod{{Ordinal: 0, Revision: "r1"}}}, nil},
		{"ordered: then 1", StatefulSetState{Replicas: 3, UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1")}}, []StatefulAction{create(1, "r1")}},
		{"ordered: a gap is filled first", StatefulSetState{Replicas: 3, UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1"), ready(2, "r1")}}, []StatefulAction{create(1, "r1")}},
		{"parallel: all at once", StatefulSetState{Replicas: 3, Parallel: true, UpdateRevision: "r1"},
			[]StatefulAction{create(0, "r1"), create(1, "r1"), create(2, "r1")}},
		{"failed pod is deleted", StatefulSetState{Replicas: 2, UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1"), {Ordinal: 1, Revision: "r1", Failed: true}}}, []StatefulAction{del(1, "failed")}},
		{"ordered scale down: highest first, one at a time", StatefulSetState{Replicas: 1, UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1"), ready(2, "r1")}}, []StatefulAction{del(2, "scale down")}},
		{"ordered scale down waits for a terminating pod", StatefulSetState{Replicas: 1, UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1"), {Ordinal: 2, Revision: "r1", Terminating: true}}}, nil},
		{"ordered scale down waits for unhealthy replicas", StatefulSetState{Replicas: 2, UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1"), {Ordinal: 1, Revision: "r1"}, ready(2, "r1")}}, nil},
		{"an unhealthy condemned pod may go if it is the only one", StatefulSetState{Replicas: 1, UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1"), {Ordinal: 2, Revision: "r1"}}}, []StatefulAction{del(2, "scale down")}},
		{"but not past a lower unhealthy one", StatefulSetState{Replicas: 1, UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1"), {Ordinal: 1, Revision: "r1"}, {Ordinal: 2, Revision: "r1"}}}, nil},
		{"parallel scale down: all at once", StatefulSetState{Replicas: 1, Parallel: true, UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1"), ready(2, "r1")}}, []StatefulAction{del(2, "scale down"), del(1, "scale down")}},
		{"rolling update: highest outdated first", StatefulSetState{Replicas: 3, CurrentRevision: "r1", UpdateRevision: "r2",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1"), ready(2, "r1")}}, []StatefulAction{del(2, "update")}},
		{"rolling update: replacement is made at the new revision", StatefulSetState{Replicas: 3, CurrentRevision: "r1", UpdateRevision: "r2",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1")}}, []StatefulAction{create(2, "r2")}},
		{"rolling update: wait for the replacement", StatefulSetState{Replicas: 3, CurrentRevision: "r1", UpdateRevision: "r2",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1"), {Ordinal: 2, Revision: "r2", Ready: true}}}, nil},
		{"rolling update: then the next", StatefulSetState{Replicas: 3, CurrentRevision: "r1", UpdateRevision: "r2",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1"), ready(2, "r2")}}, []StatefulAction{del(1, "update")}},
		{"partition stops the update", StatefulSetState{Replicas: 3, Partition: 2, CurrentRevision: "r1", UpdateRevision: "r2",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1"), ready(2, "r2")}}, nil},
		{"below the partition a pod is recreated at the current revision", StatefulSetState{Replicas: 3, Partition: 2, CurrentRevision: "r1", UpdateRevision: "r2",
			Pods: []StatefulPod{ready(0, "r1"), ready(2, "r2")}}, []StatefulAction{create(1, "r1")}},
		{"OnDelete never deletes for an update", StatefulSetState{Replicas: 2, OnDelete: true, CurrentRevision: "r1", UpdateRevision: "r2",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1")}}, nil},
		{"OnDelete recreates at the new revision", StatefulSetState{Replicas: 2, OnDelete: true, CurrentRevision: "r1", UpdateRevision: "r2",
			Pods: []StatefulPod{ready(0, "r1")}}, []StatefulAction{create(1, "r2")}},
		{"converged", StatefulSetState{Replicas: 2, CurrentRevision: "r1", UpdateRevision: "r1",
			Pods: []StatefulPod{ready(0, "r1"), ready(1, "r1")}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := PlanStatefulSet(c.in)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestPlanStatefulSetProperties runs random StatefulSets through whole
// lifetimes (scale up, update, scale down, pods failing and going
// slowly) and checks the ordering invariants on every plan, and that each
// converges.
func TestPlanStatefulSetProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for iter := range 3000 {
		s := StatefulSetState{
			Replicas:        rng.IntN(6),
			Parallel:        rng.IntN(3) == 0,
			OnDelete:        rng.IntN(5) == 0,
			Partition:       rng.IntN(3) * rng.IntN(2),
			CurrentRevision: "r1",
			UpdateRevision:  []string{"r1", "r2"}[rng.IntN(2)],
		}
		world := map[int]StatefulPod{}
		for ord := range rng.IntN(7) {
			if rng.IntN(4) > 0 {
				world[ord] = StatefulPod{Ordinal: ord, Revision: "r1", Ready: rng.IntN(3) > 0}
			}
		}
		for ord, p := range world {
			p.Available = p.Ready
			world[ord] = p
		}
		converged := false
		for step := 0; step < 400; step++ {
			s.Pods = s.Pods[:0]
			for _, p := range world {
				s.Pods = append(s.Pods, p)
			}
			acts := PlanStatefulSet(s)
			checkStatefulInvariants(t, iter, s, world, acts)
			if len(acts) == 0 && statefulConverged(s, world) {
				converged = true
				break
			}
			for _, a := range acts {
				if a.Create {
					world[a.Ordinal] = StatefulPod{Ordinal: a.Ordinal, Revision: a.Revision}
				} else if rng.IntN(2) == 0 {
					delete(world, a.Ordinal)
				} else {
					p := world[a.Ordinal]
					p.Terminating = true
					world[a.Ordinal] = p
				}
			}
			// The world moves: terminating pods go, new ones become
			// ready, and early on some fail.
			for ord, p := range world {
				switch {
				case p.Terminating && rng.IntN(2) == 0:
					delete(world, ord)
				case !p.Terminating && !p.Ready && !p.Failed && rng.IntN(2) == 0:
					p.Ready, p.Available = true, true
					world[ord] = p
				case step < 20 && !p.Terminating && rng.IntN(30) == 0:
					p.Failed, p.Ready, p.Available = true, false, false
					world[ord] = p
				}
			}
		}
		if !converged {
			t.Fatalf("iter %d: %+v did not converge: %+v", iter, s, world)
		}
	}
}

func statefulConverged(s StatefulSetState, world map[int]StatefulPod) bool {
	if len(world) != s.Replicas {
		return false
	}
	for ord := range s.Replicas {
		p, ok := world[ord]
		if !ok || !p.Ready || p.Terminating || p.Failed {
			return false
		}
		if !s.OnDelete && ord >= s.Partition && p.Revision != s.UpdateRevision {
			return false
		}
	}
	return true
}

func checkStatefulInvariants(t *testing.T, iter int, s StatefulSetState, world map[int]StatefulPod, acts []StatefulAction) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("iter %d: state %+v, pods %+v, plan %+v: %s", iter, s, world, acts, fmt.Sprintf(format, args...))
	}
	healthy := func(ord int) bool {
		p, ok := world[ord]
		return ok && p.Ready && !p.Terminating && !p.Failed
	}
	if !s.Parallel && len(acts) > 1 {
		fail("OrderedReady did more than one thing")
	}
	var updates int
	seen := map[int]bool{}
	for _, a := range acts {
		if seen[a.Ordinal] {
			fail("ordinal %d acted on twice", a.Ordinal)
		}
		seen[a.Ordinal] = true
		p, exists := world[a.Ordinal]
		if a.Create {
			if exists {
				fail("created existing ordinal %d", a.Ordinal)
			}
			if a.Ordinal >= s.Replicas {
				fail("created ordinal %d beyond replicas", a.Ordinal)
			}
			if !s.Parallel {
				for lower := range a.Ordinal {
					if !healthy(lower) {
						fail("created %d before %d was Running and Ready", a.Ordinal, lower)
					}
				}
			}
			continue
		}
		if !exists || p.Terminating {
			fail("deleted %d, which is absent or already going", a.Ordinal)
		}
		switch a.Reason {
		case "scale down":
			if a.Ordinal < s.Replicas {
				fail("scaled down ordinal %d below replicas", a.Ordinal)
			}
			for higher := range world {
				if higher > a.Ordinal && !seen[higher] && !world[higher].Terminating && !slices.ContainsFunc(acts, func(x StatefulAction) bool { return x.Ordinal == higher }) {
					fail("scaled down %d while %d is still there", a.Ordinal, higher)
				}
			}
			if !s.Parallel {
				for lower := range s.Replicas {
					if !healthy(lower) {
						fail("scaled down %d while %d is not healthy", a.Ordinal, lower)
					}
				}
			}
		case "update":
			updates++
			if s.OnDelete || a.Ordinal < s.Partition || a.Ordinal >= s.Replicas || p.Revision == s.UpdateRevision {
				fail("update deleted %d", a.Ordinal)
			}
			for higher := a.Ordinal + 1; higher < s.Replicas; higher++ {
				if q, ok := world[higher]; !ok || q.Revision != s.UpdateRevision || !q.Available || q.Terminating {
					fail("updated %d before %d was updated and available", a.Ordinal, higher)
				}
			}
		case "failed":
			if !p.Failed {
				fail("deleted healthy %d as failed", a.Ordinal)
			}
		default:
			fail("unknown reason %q", a.Reason)
		}
	}
	if updates > 1 {
		fail("%d pods deleted for the update at once", updates)
	}
}

func TestStatefulOrdinal(t *testing.T) {
	for _, c := range []struct {
		set, pod string
		ord      int
		ok       bool
	}{
		{"web", "web-0", 0, true}, {"web", "web-12", 12, true}, {"web", "web-01", 0, false},
		{"web", "web-x", 0, false}, {"web", "webby-1", 0, false}, {"a-b", "a-b-3", 3, true}, {"web", "web--1", 0, false},
	} {
		ord, ok := statefulOrdinal(c.set, c.pod)
		if ok != c.ok || (ok && ord != c.ord) {
			t.Errorf("statefulOrdinal(%q, %q) = %d, %v; want %d, %v", c.set, c.pod, ord, ok, c.ord, c.ok)
		}
	}
}

func TestStatefulPodIdentityRoundTrip(t *testing.T) {
	sts := &manifests.StatefulSet{
		TypeMeta:   manifests.TypeMeta{Kind: "StatefulSet", APIVersion: "apps/v1"},
		ObjectMeta: manifests.ObjectMeta{Name: "db", Namespace: "default", UID: "u1"},
		Spec: manifests.StatefulSetSpec{ServiceName: "db",
			Template: manifests.PodTemplateSpec{ObjectMeta: manifests.ObjectMeta{Labels: map[string]string{"app": "db"}},
				Spec: manifests.PodSpec{Containers: []manifests.Container{{Name: "c", Image: "img:1"}}, NodeSelector: map[string]string{"disk": "ssd"}}},
			VolumeClaimTemplates: []manifests.PersistentVolumeClaim{{ObjectMeta: manifests.ObjectMeta{Name: "data"}}}},
		Status: manifests.StatefulSetStatus{ClaimNodes: map[string]string{"db-1": "n2"}},
	}
	rev := statefulRevision(sts)
	pod := statefulPod(sts, &sts.Spec.Template, 1, rev)
	if pod.Name != "db-1" || pod.Spec.Hostname != "db-1" || pod.Spec.Subdomain != "db" {
		t.Fatalf("identity: name %s hostname %s subdomain %s", pod.Name, pod.Spec.Hostname, pod.Spec.Subdomain)
	}
	if len(pod.Spec.Volumes) != 1 || pod.Spec.Volumes[0].PersistentVolumeClaim == nil || pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "data-db-1" {
		t.Fatalf("volumes %+v, want claim data-db-1", pod.Spec.Volumes)
	}
	if pod.Spec.NodeSelector[LabelHostname] != "n2" || pod.Spec.NodeSelector["disk"] != "ssd" {
		t.Fatalf("node selector %v: want pinned to n2 and the template's own", pod.Spec.NodeSelector)
	}
	if pod.Labels[LabelControllerRevisionHash] != rev || pod.Labels[LabelStatefulSetPodName] != "db-1" {
		t.Fatalf("labels %v", pod.Labels)
	}
	// The template rebuilt from the pod makes the same pod for another
	// ordinal as the original template does.
	back := templateFromStatefulPod(sts, pod)
	a, b := statefulPod(sts, back, 0, rev), statefulPod(sts, &sts.Spec.Template, 0, rev)
	a.UID, b.UID = "", ""
	if manifests.Hash(a) != manifests.Hash(b) {
		t.Fatalf("rebuilt template differs:\n%+v\n%+v", a, b)
	}
}

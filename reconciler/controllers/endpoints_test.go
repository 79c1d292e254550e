package controllers

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/capstan-io/capstan/manifests"
)

// epNode is a Ready node with an InternalIP.
func epNode(name, addr string) *manifests.Node {
	return &manifests.Node{ObjectMeta: manifests.ObjectMeta{Name: name},
		Status: manifests.NodeStatus{Addresses: []manifests.NodeAddress{{Type: "InternalIP", Address: addr}, {Type: "Hostname", Address: name}}}}
}

// epPod is a pod of app "web" declaring container port 8080 named http,
// bound to node, published on hostPort (0: not reported), ready or not.
func epPod(name, node string, hostPort int32, ready bool) *manifests.Pod {
	p := &manifests.Pod{
		ObjectMeta: manifests.ObjectMeta{Name: name, Namespace: "default", UID: "uid-" + name, Labels: map[string]string{"app": "web"}},
		Spec: manifests.PodSpec{NodeName: node, Containers: []manifests.Container{{Name: "web",
			Ports: []manifests.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: "TCP"}}}}},
		Status: manifests.PodStatus{Phase: manifests.PodRunning, PodIP: "10.88.0.5"},
	}
	if hostPort != 0 {
		p.Status.HostPorts = []manifests.PublishedPort{{ContainerPort: 8080, Protocol: "TCP", HostPort: hostPort}}
	}
	st := manifests.ConditionFalse
	if ready {
		st = manifests.ConditionTrue
	}
	p.Status.Conditions = []manifests.Condition{{Type: "Ready", Status: st}}
	return p
}

func webService(target manifests.IntOrString) *manifests.Service {
	return &manifests.Service{
		TypeMeta:   manifests.TypeMeta{Kind: "Service", APIVersion: "v1"},
		ObjectMeta: manifests.ObjectMeta{Name: "web", Namespace: "default", UID: "svc-uid"},
		Spec: manifests.ServiceSpec{Type: manifests.ServiceClusterIP, Selector: map[string]string{"app": "web"},
			Ports: []manifests.ServicePort{{Port: 80, Protocol: "TCP", TargetPort: target}}},
	}
}

func TestEndpointsForTable(t *testing.T) {
	nodes := map[string]*manifests.Node{"n1": epNode("n1", "192.0.2.1"), "n2": epNode("n2", "192.0.2.2"), "bare": {ObjectMeta: manifests.ObjectMeta{Name: "bare"}}}
	terminating := epPod("d-term", "n1", 40003, true)
	terminating.DeletionTimestamp = manifests.Now()
	other := epPod("z-other", "n1", 40009, true)
	other.Labels = map[string]string{"app": "db"}
	finished := epPod("e-done", "n1", 40004, false)
	finished.Status.Phase = manifests.PodSucceeded
	undeclared := epPod("f-undeclared", "n2", 40005, true)
	undeclared.Spec.Containers[0].Ports = nil
	explicit := epPod("g-hostport", "n2", 0, true)
	explicit.Spec.Containers[0].Ports[0].HostPort = 8080 // given, not reported yet
	pods := []*manifests.Pod{
		epPod("b-ready", "n2", 40002, true),
		epPod("a-ready", "n1", 40001, true),
		terminating, other, finished, undeclared, explicit,
		epPod("c-notready", "n1", 40006, false),
		epPod("h-unscheduled", "", 0, false),
		epPod("i-unpublished", "n1", 0, true),
		epPod("j-lostnode", "n9", 40007, true),
		epPod("k-bare", "bare", 40008, true),
	}
	res := EndpointsFor(webService(*manifests.FromString("http")), pods, nodes)
	type row struct {
		pod, addr         string
		hostPort          int32
		ready, terminated bool
	}
	var got []row
	for _, e := range res.Endpoints {
		got = append(got, row{e.TargetRef.Name, e.Addresses[0], e.HostPorts["80"], *e.Conditions.Ready, *e.Conditions.Terminating})
	}
	want := []row{
		{"a-ready", "192.0.2.1", 40001, true, false},
		{"b-ready", "192.0.2.2", 40002, true, false},
		{"c-notready", "192.0.2.1", 40006, false, false},
		{"d-term", "192.0.2.1", 40003, false, true},
		{"g-hostport", "192.0.2.2", 8080, true, false},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("endpoints:\n got %+v\nwant %+v", got, want)
	}
	reasons := map[string]string{}
	for _, p := range res.Pods {
		reasons[p.Pod] = p.Reason
	}
	for pod, want := range map[string]string{
		"a-ready": "", "c-notready": ReasonNotReady, "d-term": ReasonTerminating, "e-done": ReasonFinished,
		"f-undeclared":  ReasonNotPublished + `: targetPort "http" of port 80 is not a declared container port`,
		"h-unscheduled": ReasonNotScheduled, "i-unpublished": ReasonNotPublished + `: targetPort "http" of port 80 has no host port yet`,
		"j-lostnode": ReasonNodeUnknown + ": n9", "k-bare": ReasonNoAddressNode + ": bare",
	} {
		if got, ok := reasons[pod]; !ok || !strings.HasPrefix(got, want) {
			t.Errorf("pod %s: reason %q, want %q", pod, got, want)
		}
	}
	if _, ok := reasons["z-other"]; ok {
		t.Error("a pod the selector does not match is listed among the selected")
	}
	if res.Ports[0].Port == nil || *res.Ports[0].Port != 80 || *res.Ports[0].Protocol != "TCP" {
		t.Errorf("ports: %+v", res.Ports)
	}
}

func TestEndpointsForSpecialCases(t *testing.T) {
	nodes := map[string]*manifests.Node{"n1": epNode("n1", "192.0.2.1")}
	t.Run("publishNotReadyAddresses", func(t *testing.T) {
		svc := webService(*manifests.FromInt(8080))
		svc.Spec.PublishNotReadyAddresses = true
		term := epPod("b", "n1", 40002, true)
		term.DeletionTimestamp = manifests.Now()
		res := EndpointsFor(svc, []*manifests.Pod{epPod("a", "n1", 40001, false), term}, nodes)
		if !*res.Endpoints[0].Conditions.Ready || *res.Endpoints[1].Conditions.Ready {
			t.Errorf("not-ready pod published ready, terminating not: got %v, %v", *res.Endpoints[0].Conditions.Ready, *res.Endpoints[1].Conditions.Ready)
		}
	})
	t.Run("headless StatefulSet hostname", func(t *testing.T) {
		svc := webService(*manifests.FromInt(8080))
		svc.Spec.ClusterIP = manifests.ClusterIPNone
		p := epPod("web-0", "n1", 40001, true)
		p.Spec.Hostname, p.Spec.Subdomain = "web-0", "web"
		q := epPod("web-1", "n1", 40002, true)
		q.Spec.Hostname, q.Spec.Subdomain = "web-1", "other"
		res := EndpointsFor(svc, []*manifests.Pod{p, q}, nodes)
		if h := res.Endpoints[0].Hostname; h == nil || *h != "web-0" {
			t.Errorf("hostname of web-0: %v", h)
		}
		if h := res.Endpoints[1].Hostname; h != nil {
			t.Errorf("hostname of a pod of another subdomain: %v", *h)
		}
	})
	t.Run("named ports key host ports by name", func(t *testing.T) {
		svc := webService(*manifests.FromString("http"))
		svc.Spec.Ports[0].Name = "web"
		svc.Spec.Ports = append(svc.Spec.Ports, manifests.ServicePort{Name: "dns", Port: 53, Protocol: "UDP", TargetPort: *manifests.FromInt(53)})
		res := EndpointsFor(svc, []*manifests.Pod{epPod("a", "n1", 40001, true)}, nodes)
		if got := res.Endpoints[0].HostPorts; !reflect.DeepEqual(got, map[string]int32{"web": 40001}) {
			t.Errorf("host ports %v", got)
		}
		if !strings.Contains(res.Pods[0].Reason, "targetPort 53/UDP of port 53 is not a declared") || !res.Pods[0].Ready {
			t.Errorf("a pod serving one port of two: %+v", res.Pods[0])
		}
	})
	t.Run("no selector, ExternalName", func(t *testing.T) {
		svc := webService(*manifests.FromInt(8080))
		svc.Spec.Selector = nil
		if res := EndpointsFor(svc, []*manifests.Pod{epPod("a", "n1", 40001, true)}, nodes); len(res.Endpoints)+len(res.Pods) != 0 {
			t.Errorf("a service without selector got %+v", res)
		}
		svc = webService(*manifests.FromInt(8080))
		svc.Spec.Type = manifests.ServiceExternalName
		if res := EndpointsFor(svc, []*manifests.Pod{epPod("a", "n1", 40001, true)}, nodes); len(res.Endpoints) != 0 {
			t.Errorf("an ExternalName service got endpoints %+v", res.Endpoints)
		}
	})
	t.Run("IPv6 nodes", func(t *testing.T) {
		res := EndpointsFor(webService(*manifests.FromInt(8080)), []*manifests.Pod{epPod("a", "n6", 40001, true)},
			map[string]*manifests.Node{"n6": epNode("n6", "2001:db8::1")})
		if res.AddressType != "IPv6" {
			t.Errorf("address type %s", res.AddressType)
		}
	})
}

// TestEndpointsForProperties checks, on random pods and nodes: every ready,
// matched, bound, published pod on a known node is listed exactly once and
// ready; no unmatched pod is listed; a terminating pod is never ready; the
// endpoints are sorted by pod name and do not depend on the order of the
// input; every selected pod is accounted for.
func TestEndpointsForProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for iter := range 500 {
		nodes := map[string]*manifests.Node{}
		for i := range rng.IntN(4) {
			n := fmt.Sprintf("n%d", i)
			nodes[n] = epNode(n, fmt.Sprintf("192.0.2.%d", i+1))
		}
		svc := webService(*manifests.FromString("http"))
		svc.Spec.PublishNotReadyAddresses = rng.IntN(5) == 0
		var pods []*manifests.Pod
		for i := range rng.IntN(12) {
			node := ""
			if rng.IntN(6) > 0 {
				node = fmt.Sprintf("n%d", rng.IntN(5)) // n4 never exists
			}
			hp := int32(0)
			if rng.IntN(6) > 0 {
				hp = int32(40000 + i)
			}
			p := epPod(fmt.Sprintf("p%02d", i), node, hp, rng.IntN(3) > 0)
			if rng.IntN(4) == 0 {
				p.DeletionTimestamp = manifests.Now()
			}
			if rng.IntN(5) == 0 {
				p.Labels = map[string]string{"app": "other"}
			}
			if rng.IntN(10) == 0 {
				p.Status.Phase = manifests.PodFailed
			}
			pods = append(pods, p)
		}
		res := EndpointsFor(svc, pods, nodes)
		shuffled := slices.Clone(pods)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if again := EndpointsFor(svc, shuffled, nodes); !reflect.DeepEqual(res, again) {
			t.Fatalf("iteration %d: the result depends on the order of the pods", iter)
		}
		listed := map[string]int{}
		var names []string
		for _, e := range res.Endpoints {
			name := e.TargetRef.Name
			listed[name]++
			names = append(names, name)
			if *e.Conditions.Terminating && *e.Conditions.Ready {
				t.Fatalf("iteration %d: terminating endpoint %s is ready", iter, name)
			}
		}
		if !slices.IsSorted(names) {
			t.Fatalf("iteration %d: endpoints not sorted: %v", iter, names)
		}
		selected := 0
		for _, p := range pods {
			matched := p.Labels["app"] == "web"
			if matched {
				selected++
			}
			eligible := matched && p.Spec.NodeName != "" && nodes[p.Spec.NodeName] != nil && len(p.Status.HostPorts) > 0 && !manifests.IsPodTerminal(p)
			switch {
			case !matched && listed[p.Name] > 0:
				t.Fatalf("iteration %d: unmatched pod %s listed", iter, p.Name)
			case eligible && listed[p.Name] != 1:
				t.Fatalf("iteration %d: eligible pod %s listed %d times", iter, p.Name, listed[p.Name])
			case !eligible && listed[p.Name] != 0:
				t.Fatalf("iteration %d: ineligible pod %s listed", iter, p.Name)
			}
			if eligible && p.DeletionTimestamp == nil && (manifests.IsPodReady(p) || svc.Spec.PublishNotReadyAddresses) {
				for _, e := range res.Endpoints {
					if e.TargetRef.Name == p.Name && !*e.Conditions.Ready {
						t.Fatalf("iteration %d: ready pod %s listed not ready", iter, p.Name)
					}
				}
			}
		}
		if len(res.Pods) != selected {
			t.Fatalf("iteration %d: %d pods accounted for, %d selected", iter, len(res.Pods), selected)
		}
	}
}

func TestSelectionConditions(t *testing.T) {
	svc := webService(*manifests.FromString("http"))
	conds := selectionConditions(svc, nil)
	if conds[0].Status != manifests.ConditionFalse || conds[0].Reason != "NoPodsSelected" || !strings.Contains(conds[0].Message, "app=web") {
		t.Errorf("no pods: %+v", conds[0])
	}
	bad := epPod("b", "n1", 40001, true)
	bad.Spec.Containers[0].Ports[0].Name = "web"
	conds = selectionConditions(svc, []*manifests.Pod{epPod("a", "n1", 40001, true), bad})
	if conds[0].Status != manifests.ConditionTrue {
		t.Errorf("pods selected: %+v", conds[0])
	}
	if c := conds[1]; c.Status != manifests.ConditionFalse || c.Reason != "TargetPortNotExposed" || !strings.Contains(c.Message, `targetPort "http" of port 80 is declared by no container of pod b`) {
		t.Errorf("target port: %+v", c)
	}
	svc.Spec.Ports[0].TargetPort = *manifests.FromInt(8080)
	if c := selectionConditions(svc, []*manifests.Pod{bad})[1]; c.Status != manifests.ConditionTrue {
		t.Errorf("a numeric target port declared by the container: %+v", c)
	}
}

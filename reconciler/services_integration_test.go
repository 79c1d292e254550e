package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/internal/testwait"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
	"github.com/capstan-io/capstan/reconciler/controllers"
)

// Graceful deletion, Services and endpoint slices, on a real in-process
// NATS server with fake-runtime nodes.

// webApp is a Deployment of app "web" whose container declares port 8080
// (named http), and a Service in front of it.
func webApp(replicas int, image, strategy string) string {
	return deployment("web", replicas, image, `          ports:
            - {name: http, containerPort: 8080}
  minReadySeconds: 0
`+strategy) + `---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
    - {port: 80, targetPort: http}
`
}

func (c *cluster) service(name string) *manifests.Service {
	c.t.Helper()
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("Service", "default", name))
	if err != nil {
		return nil
	}
	return obj.(*manifests.Service)
}

func (c *cluster) slice(name string) *manifests.EndpointSlice {
	obj, _, err := cache.GetObject(c.ctx, c.conn.Objects, manifests.Key("EndpointSlice", "default", name))
	if err != nil {
		return nil
	}
	return obj.(*manifests.EndpointSlice)
}

func readyEndpoints(s *manifests.EndpointSlice) int {
	n := 0
	for _, e := range s.Endpoints {
		if e.Conditions.Ready != nil && *e.Conditions.Ready {
			n++
		}
	}
	return n
}

// TestGracefulPodDeletion scales a Deployment down: the pod that goes is
// first marked (deletionTimestamp), reported not ready with reason
// Terminating, listed in the endpoints as terminating, stopped by its node
// and only then deleted.
func TestGracefulPodDeletion(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write("web.yaml", webApp(2, "img:1", ""))
	r.commit("web")
	c := startCluster(t, r)
	rt := c.addNode("n1")
	c.readyPods("web", 2, "img:1", 15*time.Second)
	testwait.For(t, 10*time.Second, "web's endpoint slice", func() error {
		if s := c.slice("web"); s == nil || readyEndpoints(s) != 2 {
			return fmt.Errorf("slice %+v", s)
		}
		return nil
	})

	type seen struct {
		terminating, notReadyTerminating, gone bool
		endpointTerminating                    bool
	}
	var mu sync.Mutex
	byPod := map[string]*seen{}
	synced := false // the watch has delivered the current state
	ch, err := c.conn.Objects.Watch(c.ctx, ">")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for e := range ch {
			mu.Lock()
			switch {
			case e.Op == bus.OpSynced:
				synced = true
			case strings.HasPrefix(e.Key, "Pod.default."):
				name := strings.TrimPrefix(e.Key, "Pod.default.")
				s := byPod[name]
				if s == nil {
					s = &seen{}
					byPod[name] = s
				}
				if e.Op == bus.OpDelete {
					s.gone = true
				} else if obj, err := manifests.Decode(e.Value); err == nil && e.Op == bus.OpPut {
					p := obj.(*manifests.Pod)
					if p.DeletionTimestamp != nil {
						s.terminating = true
						if c := manifests.FindCondition(p.Status.Conditions, "Ready"); c != nil && c.Status == manifests.ConditionFalse && c.Reason == "Terminating" {
							s.notReadyTerminating = !s.gone
						}
					}
				}
			case e.Key == "EndpointSlice.default.web" && e.Op == bus.OpPut:
				if obj, err := manifests.Decode(e.Value); err == nil {
					for _, ep := range obj.(*manifests.EndpointSlice).Endpoints {
						if ep.Conditions.Terminating != nil && *ep.Conditions.Terminating && !*ep.Conditions.Ready {
							if s := byPod[ep.TargetRef.Name]; s != nil {
								s.endpointTerminating = true
							}
						}
					}
				}
			}
			mu.Unlock()
		}
	}()
	testwait.For(t, 10*time.Second, "the watch synced", func() error {
		mu.Lock()
		defer mu.Unlock()
		if !synced {
			return errors.New("the watch has not delivered the current state")
		}
		return nil
	})

	r.write("web.yaml", webApp(1, "img:1", ""))
	r.commit("scale down")
	c.readyPods("web", 1, "img:1", 20*time.Second)
	// The scaled-down pod is gone once its node has stopped it: wait for
	// that, then check how it went.
	testwait.For(t, 20*time.Second, "one pod deleted", func() error {
		mu.Lock()
		defer mu.Unlock()
		var went []string
		for name, s := range byPod {
			if s.gone {
				went = append(went, name)
			}
		}
		if len(went) != 1 {
			return fmt.Errorf("pods deleted: %v, want one", went)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for name, s := range byPod {
		if s.gone && (!s.terminating || !s.notReadyTerminating || !s.endpointTerminating) {
			t.Errorf("pod %s went without a graceful deletion: %+v", name, *s)
		}
	}
	if pods, _ := rt.ListPods(c.ctx, nil); len(pods) != 1 {
		t.Errorf("runtime pods left: %d, want 1", len(pods))
	}
	testwait.For(t, 5*time.Second, "the endpoint slice after the deletion", func() error {
		if s := c.slice("web"); s == nil || len(s.Endpoints) != 1 || readyEndpoints(s) != 1 {
			return fmt.Errorf("slice %+v", s)
		}
		return nil
	})
}

// TestServiceEndpoints checks a Service's allocation, its endpoint slice
// (node address, the host port the runtime picked, owner and labels),
// its conditions for a selector or a target port that matches nothing, and
// that a converged cluster with Services writes nothing (the sync keeps
// the allocated fields).
func TestServiceEndpoints(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	r.write("web.yaml", webApp(2, "img:1", "")+`---
apiVersion: v1
kind: Service
metadata:
  name: nobody
spec:
  selector: {app: nobody}
  ports:
    - {port: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: wrongport
spec:
  type: NodePort
  selector: {app: web}
  ports:
    - {port: 80, targetPort: metrics}
`)
	r.commit("web")
	c := startCluster(t, r)
	rt := c.addNode("n1")
	c.addNode("n2")
	c.readyPods("web", 2, "img:1", 15*time.Second)

	var svc *manifests.Service
	testwait.For(t, 10*time.Second, "a cluster IP", func() error {
		svc = c.service("web")
		if svc == nil || svc.Spec.ClusterIP == "" {
			return fmt.Errorf("no cluster IP yet: %+v", svc)
		}
		return nil
	})
	if !strings.HasPrefix(svc.Spec.ClusterIP, "10.96.") || len(svc.Spec.ClusterIPs) != 1 || svc.Spec.ClusterIPs[0] != svc.Spec.ClusterIP {
		t.Errorf("cluster IPs %q %q", svc.Spec.ClusterIP, svc.Spec.ClusterIPs)
	}
	var slice *manifests.EndpointSlice
	testwait.For(t, 10*time.Second, "the endpoint slice", func() error {
		slice = c.slice("web")
		if slice == nil || readyEndpoints(slice) != 2 {
			return fmt.Errorf("slice %+v", slice)
		}
		return nil
	})
	if ref := slice.Controller(); ref == nil || ref.Kind != "Service" || ref.UID != svc.UID || slice.Labels[controllers.LabelServiceName] != "web" {
		t.Errorf("slice metadata %+v", slice.ObjectMeta)
	}
	pods, _ := rt.ListPods(c.ctx, nil)
	published := map[int32]bool{}
	for _, rp := range pods {
		for _, p := range rp.Ports {
			published[int32(p.HostPort)] = p.ContainerPort == 8080
		}
	}
	for _, e := range slice.Endpoints {
		if e.Addresses[0] != "127.0.0.1" || e.HostPorts["80"] == 0 || e.TargetRef == nil || e.NodeName == nil {
			t.Errorf("endpoint %+v", e)
		}
		if *e.NodeName == "n1" && !published[e.HostPorts["80"]] {
			t.Errorf("endpoint host port %d is not what the runtime published: %v", e.HostPorts["80"], published)
		}
	}

	cond := func(name, typ string) *manifests.Condition {
		s := c.service(name)
		if s == nil {
			return nil
		}
		return manifests.FindCondition(s.Status.Conditions, typ)
	}
	testwait.For(t, 10*time.Second, "the services' PodsSelected conditions", func() error {
		if c := cond("nobody", controllers.ServicePodsSelected); c == nil || c.Reason != "NoPodsSelected" {
			return fmt.Errorf("nobody: %+v", c)
		}
		if c := cond("wrongport", controllers.ServicePortsResolved); c == nil || c.Reason != "TargetPortNotExposed" {
			return fmt.Errorf("wrongport: %+v", c)
		}
		if c := cond("web", controllers.ServicePortsResolved); c == nil || c.Status != manifests.ConditionTrue {
			return fmt.Errorf("web: %+v", c)
		}
		return nil
	})
	if s := c.service("wrongport"); s.Spec.Ports[0].NodePort < 30000 || s.Spec.Ports[0].NodePort > 32767 {
		t.Errorf("node port %d", s.Spec.Ports[0].NodePort)
	}
	evs, err := c.conn.Events.List(c.ctx, "Service", "default", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if !slicesContainsReason(evs, "NoPodsSelected") {
		t.Errorf("no NoPodsSelected event: %+v", evs)
	}
	// The sync re-applies every 2 s: it must not undo the allocations.
	c.quiet(5 * time.Second)

	// A deleted slice is put back.
	if err := c.conn.Objects.Delete(c.ctx, "EndpointSlice.default.web", 0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the endpoint slice", func() error {
		if s := c.slice("web"); s == nil || readyEndpoints(s) != 2 {
			return fmt.Errorf("slice %+v", s)
		}
		return nil
	})

	// A node that is lost takes its endpoints with it: not ready once its
	// pods are shown NodeLost, gone after the eviction timeout, replaced
	// on the other node.
	onN2 := ""
	for _, e := range c.slice("web").Endpoints {
		if *e.NodeName == "n2" {
			onN2 = e.TargetRef.Name
		}
	}
	if onN2 == "" {
		t.Fatal("no endpoint on n2: the replicas were not spread")
	}
	c.nodes["n2"]()
	delete(c.nodes, "n2")
	testwait.For(t, 20*time.Second, "the lost node's endpoints gone", func() error {
		s := c.slice("web")
		for _, e := range s.Endpoints {
			if *e.NodeName == "n2" {
				return fmt.Errorf("endpoint %s still on the lost node (ready %v)", e.TargetRef.Name, *e.Conditions.Ready)
			}
		}
		if readyEndpoints(s) != 2 {
			return fmt.Errorf("%d ready endpoints", readyEndpoints(s))
		}
		return nil
	})
}

func slicesContainsReason(evs []manifests.Event, reason string) bool {
	for _, e := range evs {
		if e.Reason == reason && e.Type == "Warning" {
			return true
		}
	}
	return false
}

// TestRolloutKeepsEndpoints rolls a Deployment behind a Service and
// watches its endpoint slice throughout: the ready endpoints never drop
// below desired - maxUnavailable, and terminating pods are never ready.
func TestRolloutKeepsEndpoints(t *testing.T) {
	t.Parallel()
	const strategy = `  strategy:
    rollingUpdate: {maxUnavailable: 1, maxSurge: 1}
`
	r := newRepo(t)
	r.write("web.yaml", webApp(4, "img:1", strategy))
	r.commit("web")
	c := startCluster(t, r)
	c.addNode("n1")
	c.addNode("n2")
	c.readyPods("web", 4, "img:1", 20*time.Second)
	testwait.For(t, 10*time.Second, "the endpoint slice", func() error {
		if s := c.slice("web"); s == nil || readyEndpoints(s) != 4 {
			return fmt.Errorf("slice %+v", s)
		}
		return nil
	})
	ch, err := c.conn.Objects.Watch(c.ctx, "EndpointSlice.default.web")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	minReady, updates := 4, 0
	var bad []string
	go func() {
		for e := range ch {
			if e.Op != bus.OpPut {
				continue
			}
			obj, err := manifests.Decode(e.Value)
			if err != nil {
				continue
			}
			s := obj.(*manifests.EndpointSlice)
			mu.Lock()
			updates++
			minReady = min(minReady, readyEndpoints(s))
			for _, ep := range s.Endpoints {
				if *ep.Conditions.Terminating && *ep.Conditions.Ready {
					bad = append(bad, ep.TargetRef.Name)
				}
			}
			mu.Unlock()
		}
	}()
	r.write("web.yaml", webApp(4, "img:2", strategy))
	r.commit("img:2")
	c.readyPods("web", 4, "img:2", 40*time.Second)
	testwait.For(t, 10*time.Second, "the endpoint slice after the rollout", func() error {
		s := c.slice("web")
		if s == nil || readyEndpoints(s) != 4 || len(s.Endpoints) != 4 {
			return fmt.Errorf("slice %+v", s)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if updates < 4 {
		t.Fatalf("only %d slice updates seen during the rollout", updates)
	}
	if minReady < 3 {
		t.Errorf("ready endpoints fell to %d during the rollout, want >= desired - maxUnavailable = 3", minReady)
	}
	if len(bad) > 0 {
		t.Errorf("terminating endpoints listed ready: %v", bad)
	}
}

// TestServiceAllocationSurvivesRestart declares Services that clash on a
// cluster IP and a node port, restarts the control plane, and checks that
// every allocation is the same after it, the older Service keeps what was
// contested, and the clashing one says why.
func TestServiceAllocationSurvivesRestart(t *testing.T) {
	t.Parallel()
	r := newRepo(t)
	svc := func(name, extra string) string {
		return fmt.Sprintf("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  selector: {app: %s}\n%s", name, name, extra)
	}
	r.write("svcs.yaml", svc("first", "  type: NodePort\n  clusterIP: 10.96.0.50\n  ports:\n    - {port: 80, nodePort: 30080}\n")+
		svc("auto", "  type: NodePort\n  ports:\n    - {name: a, port: 80}\n    - {name: b, port: 81, protocol: UDP}\n")+
		svc("headless", "  clusterIP: None\n"))
	r.commit("services")

	ctx, conn, log := t.Context(), startBus(t), logger(t)
	runSyncer(t, conn, conn.Objects, r, time.Second)
	startCP := func() func() {
		cctx, ccancel := context.WithCancel(ctx)
		cp := &controllers.ControlPlane{Objects: conn.Objects, Assignments: conn.Assignments, Status: conn.Status,
			Nodes: conn.Nodes, Events: conn.Events, Log: log, ResyncPeriod: 500 * time.Millisecond}
		done := make(chan struct{})
		go func() { _ = cp.Run(cctx); close(done) }()
		return func() { ccancel(); <-done }
	}
	get := func(name string) *manifests.Service {
		obj, _, err := cache.GetObject(ctx, conn.Objects, manifests.Key("Service", "default", name))
		if err != nil {
			return nil
		}
		return obj.(*manifests.Service)
	}
	allocs := func() (string, error) {
		var parts []string
		for _, n := range []string{"first", "auto", "clash", "headless"} {
			s := get(n)
			if s == nil {
				return "", fmt.Errorf("no service %s yet", n)
			}
			ports := []string{}
			for _, p := range s.Spec.Ports {
				ports = append(ports, fmt.Sprint(p.NodePort))
			}
			parts = append(parts, fmt.Sprintf("%s=%s/%s", n, s.Spec.ClusterIP, strings.Join(ports, ",")))
		}
		return strings.Join(parts, " "), nil
	}
	stop := startCP()
	testwait.For(t, 15*time.Second, "the services allocated", func() error {
		for _, n := range []string{"first", "auto"} {
			if s := get(n); s == nil || s.Spec.ClusterIP == "" || s.Spec.Ports[0].NodePort == 0 {
				return fmt.Errorf("%s not allocated: %+v", n, s)
			}
		}
		return nil
	})
	if s := get("first"); s.Spec.ClusterIP != "10.96.0.50" || s.Spec.Ports[0].NodePort != 30080 {
		t.Fatalf("the given address and port were not kept: %+v", s.Spec)
	}
	if s := get("auto"); s.Spec.Ports[1].NodePort == 0 || s.Spec.ClusterIP == "10.96.0.50" {
		t.Fatalf("auto: %+v", s.Spec)
	}

	// A younger Service asks for the same address and node port.
	r.write("clash.yaml", svc("clash", "  type: NodePort\n  clusterIP: 10.96.0.50\n  ports:\n    - {port: 80, nodePort: 30080}\n"))
	r.commit("clash")
	testwait.For(t, 15*time.Second, "the clash reported", func() error {
		s := get("clash")
		if s == nil {
			return fmt.Errorf("no clash yet")
		}
		c := manifests.FindCondition(s.Status.Conditions, controllers.ServiceAllocated)
		if c == nil || c.Status != manifests.ConditionFalse || c.Reason != "ClusterIPAlreadyAllocated" || !strings.Contains(c.Message, "default/first") {
			return fmt.Errorf("clash condition %+v", c)
		}
		return nil
	})
	before, err := allocs()
	if err != nil {
		t.Fatal(err)
	}
	stop()
	stop = startCP()
	defer func() { stop() }()
	// The restarted control plane reconciles everything, more than once,
	// and changes no allocation.
	testwait.Holds(t, 2*time.Second, "allocations kept", func() error {
		after, err := allocs()
		if err != nil {
			return err
		}
		if before != after {
			return fmt.Errorf("allocations changed across a restart:\n before %s\n after  %s", before, after)
		}
		return nil
	})
	if s := get("headless"); s.Spec.ClusterIP != manifests.ClusterIPNone || len(s.Spec.ClusterIPs) != 0 {
		t.Errorf("headless: %+v", s.Spec)
	}
	if c := manifests.FindCondition(get("first").Status.Conditions, controllers.ServiceAllocated); c == nil || c.Status != manifests.ConditionTrue {
		t.Errorf("first: %+v", c)
	}
}

// TestServiceDualStack runs the sync and the control plane with an IPv6
// range, then without, then with again: Services that chose no policy
// follow (dual stack, then IPv4 alone keeping their address, then dual
// again), SingleStack stays IPv4, RequireDualStack gets a condition
// without a range; the sync never undoes an allocation (the object stays
// put between reconciles).
func TestServiceDualStack(t *testing.T) {
	t.Parallel()
	const v6 = "fd00:10:96::/112"
	r := newRepo(t)
	svc := func(name, extra string) string {
		return fmt.Sprintf("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  selector: {app: %s}\n  ports: [{port: 80}]\n%s", name, name, extra)
	}
	r.write("svcs.yaml", svc("web", "")+svc("single", "  ipFamilyPolicy: SingleStack\n")+svc("req", "  ipFamilyPolicy: RequireDualStack\n"))
	r.commit("services")

	ctx, conn, log := t.Context(), startBus(t), logger(t)
	runSyncer(t, conn, conn.Objects, r, 300*time.Millisecond)
	startCP := func(v6 string) func() {
		cctx, ccancel := context.WithCancel(ctx)
		cp := &controllers.ControlPlane{Objects: conn.Objects, Assignments: conn.Assignments, Status: conn.Status,
			Nodes: conn.Nodes, Events: conn.Events, Log: log, ResyncPeriod: 300 * time.Millisecond, ServiceCIDRv6: v6}
		done := make(chan struct{})
		go func() { _ = cp.Run(cctx); close(done) }()
		return func() { ccancel(); <-done }
	}
	get := func(name string) (*manifests.Service, uint64) {
		obj, rev, err := cache.GetObject(ctx, conn.Objects, manifests.Key("Service", "default", name))
		if err != nil {
			return nil, 0
		}
		return obj.(*manifests.Service), rev
	}
	// families waits until every Service has the families (or the
	// Allocated reason) wanted, and returns web's cluster IPs.
	families := func(want map[string]string) []string {
		t.Helper()
		testwait.For(t, 15*time.Second, "the service", func() error {
			for name, w := range want {
				s, _ := get(name)
				if s == nil {
					return fmt.Errorf("no service %s yet", name)
				}
				c := manifests.FindCondition(s.Status.Conditions, controllers.ServiceAllocated)
				got := strings.Join(s.Spec.IPFamilies, ",")
				if c != nil && c.Status == manifests.ConditionFalse {
					got = c.Reason
				}
				if got != w || (c != nil && c.Status == manifests.ConditionTrue && len(s.Spec.ClusterIPs) != len(s.Spec.IPFamilies)) {
					return fmt.Errorf("%s: %s %q (condition %+v), want %s", name, got, s.Spec.ClusterIPs, c, w)
				}
			}
			return nil
		})
		s, _ := get("web")
		return s.Spec.ClusterIPs
	}

	stop := startCP(v6)
	dual := families(map[string]string{"web": "IPv4,IPv6", "single": "IPv4", "req": "IPv4,IPv6"})
	_, rev := get("web")
	testwait.Holds(t, time.Second, "the sync and the controller agree", func() error { // several syncs and resyncs
		if _, again := get("web"); again != rev {
			return fmt.Errorf("web was rewritten (revision %d, then %d): the sync and the controller disagree", rev, again)
		}
		return nil
	})
	stop()

	stop = startCP("")
	v4 := families(map[string]string{"web": "IPv4", "single": "IPv4", "req": "IPv6NotConfigured"})
	if len(v4) != 1 || v4[0] != dual[0] {
		t.Errorf("without an IPv6 range web has %q, want its IPv4 address %s alone", v4, dual[0])
	}
	stop()

	stop = startCP(v6)
	defer func() { stop() }()
	again := families(map[string]string{"web": "IPv4,IPv6", "single": "IPv4", "req": "IPv4,IPv6"})
	if again[0] != dual[0] {
		t.Errorf("web's IPv4 address changed: %s, then %s", dual[0], again[0])
	}
}

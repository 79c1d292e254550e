package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// Endpoint slices. Capstan has no overlay network, so an endpoint is
// reached at its node's address and the host port its container port is
// published on (the node publishes every declared container port, on the
// hostPort given or on one Podman picks, and reports the mapping in
// status.hostPorts). One EndpointSlice per Service with a selector, named
// after the Service, labelled kubernetes.io/service-name and owned by it
// (the garbage collector removes it with the Service).

// Labels of an EndpointSlice, as Kubernetes sets them.
const (
	LabelServiceName = "kubernetes.io/service-name"
	LabelManagedBy   = "endpointslice.kubernetes.io/managed-by"
	// ManagedByCapstan is the managed-by value of the slices Capstan makes.
	ManagedByCapstan = "endpointslice-controller.capstan.io"
)

// Why a pod selected by a Service is not a ready endpoint.
const (
	ReasonNotScheduled  = "not scheduled"
	ReasonFinished      = "finished"
	ReasonNodeUnknown   = "node unknown"
	ReasonNotPublished  = "port not published"
	ReasonNotReady      = "not ready"
	ReasonTerminating   = "terminating"
	ReasonNoAddressNode = "node has no address"
)

// SelectedPod says what became of one pod a Service selects: listed as an
// endpoint (ready or not) or left out, and why when it is not a ready
// endpoint. It is what `capstan describe service` shows.
type SelectedPod struct {
	Pod    string
	Listed bool
	Ready  bool
	// Reason is empty for a ready endpoint; otherwise one of the Reason
	// constants, with details after a colon.
	Reason string
}

// EndpointsResult is what EndpointsFor computes for one Service.
type EndpointsResult struct {
	AddressType string
	Endpoints   []manifests.Endpoint
	Ports       []manifests.EndpointPort
	// Pods lists every pod the selector matches, by name.
	Pods []SelectedPod
}

// ServicePortKey is the key of a Service port in an Endpoint's HostPorts:
// its name, or its number as text when it has none.
func ServicePortKey(p manifests.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Port))
}

// NodeAddress returns the address a node's host ports are reached on: its
// first InternalIP, else its first address.
func NodeAddress(n *manifests.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == "InternalIP" {
			return a.Address
		}
	}
	if len(n.Status.Addresses) > 0 {
		return n.Status.Addresses[0].Address
	}
	return ""
}

// HasSelector reports whether a Service selects pods, so that Capstan
// manages its endpoints: it has a selector and is not an ExternalName.
func HasSelector(svc *manifests.Service) bool {
	return len(svc.Spec.Selector) > 0 && svc.Spec.Type != manifests.ServiceExternalName
}

// SelectsPod reports whether a Service's selector matches a pod of its
// namespace.
func SelectsPod(svc *manifests.Service, pod *manifests.Pod) bool {
	if !HasSelector(svc) || pod.Namespace != svc.Namespace {
		return false
	}
	for k, v := range svc.Spec.Selector {
		if got, ok := pod.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ResolveTargetPort finds the container port a Service port targets in a
// pod: by name, or by number, among the declared ports of its containers
// with the same protocol. Only declared ports are published on the node,
// so an undeclared number does not resolve. It returns the container port
// and the host port it is published on (0 when not reported yet).
func ResolveTargetPort(sp manifests.ServicePort, pod *manifests.Pod) (containerPort, hostPort int32, ok bool) {
	proto := manifests.ProtocolOf(sp.Protocol)
	tp := sp.TargetPort
	if !tp.IsString && tp.IntVal == 0 {
		tp = manifests.IntOrString{IntVal: sp.Port}
	}
	var declared *manifests.ContainerPort
	for ci := range pod.Spec.Containers {
		for pi := range pod.Spec.Containers[ci].Ports {
			cp := &pod.Spec.Containers[ci].Ports[pi]
			if manifests.ProtocolOf(cp.Protocol) != proto {
				continue
			}
			if (tp.IsString && cp.Name == tp.StrVal) || (!tp.IsString && cp.ContainerPort == tp.IntVal) {
				declared = cp
			}
		}
	}
	if declared == nil {
		return 0, 0, false
	}
	for _, hp := range pod.Status.HostPorts {
		if hp.ContainerPort == declared.ContainerPort && manifests.ProtocolOf(hp.Protocol) == proto {
			return declared.ContainerPort, hp.HostPort, true
		}
	}
	return declared.ContainerPort, declared.HostPort, true
}

// targetText is a Service port's target as a user wrote it.
func targetText(sp manifests.ServicePort) string {
	if sp.TargetPort.IsString {
		return fmt.Sprintf("%q", sp.TargetPort.StrVal)
	}
	n := sp.TargetPort.IntVal
	if n == 0 {
		n = sp.Port
	}
	return fmt.Sprintf("%d/%s", n, manifests.ProtocolOf(sp.Protocol))
}

// EndpointsFor computes a Service's endpoints from the pods of its
// namespace and the nodes by name. It is pure and deterministic: the
// endpoints are sorted by pod name. A pod is listed when it is bound to a
// known node with an address, not finished, and at least one of the
// Service's ports resolves to a published host port; it is ready when it
// is not terminating and is Ready (or the Service publishes not-ready
// addresses); a terminating pod stays listed, not ready, so proxies drain
// it until it is gone.
func EndpointsFor(svc *manifests.Service, pods []*manifests.Pod, nodes map[string]*manifests.Node) EndpointsResult {
	res := EndpointsResult{AddressType: "IPv4"}
	for _, sp := range svc.Spec.Ports {
		res.Ports = append(res.Ports, manifests.EndpointPort{
			Name: manifests.Ptr(sp.Name), Protocol: manifests.Ptr(manifests.ProtocolOf(sp.Protocol)), Port: manifests.Ptr(sp.Port)})
	}
	if !HasSelector(svc) {
		return res
	}
	selected := make([]*manifests.Pod, 0, len(pods))
	for _, p := range pods {
		if SelectsPod(svc, p) {
			selected = append(selected, p)
		}
	}
	slices.SortFunc(selected, func(a, b *manifests.Pod) int { return strings.Compare(a.Name, b.Name) })
	v6 := 0
	for _, pod := range selected {
		sel := SelectedPod{Pod: pod.Name}
		ep, why := endpointOf(svc, pod, nodes)
		switch {
		case ep == nil:
			sel.Reason = why
		default:
			sel.Listed = true
			sel.Ready = *ep.Conditions.Ready
			var reasons []string
			switch {
			case *ep.Conditions.Terminating:
				reasons = append(reasons, ReasonTerminating)
			case !sel.Ready:
				r := ReasonNotReady
				if c := manifests.FindCondition(pod.Status.Conditions, "Ready"); c != nil && c.Reason != "" {
					r += " (" + c.Reason + ")"
				}
				reasons = append(reasons, r)
			}
			if why != "" { // listed, but some port did not resolve
				reasons = append(reasons, why)
			}
			sel.Reason = strings.Join(reasons, "; ")
			if a, err := netip.ParseAddr(ep.Addresses[0]); err == nil && a.Is6() && !a.Is4In6() {
				v6++
			}
			res.Endpoints = append(res.Endpoints, *ep)
		}
		res.Pods = append(res.Pods, sel)
	}
	if v6 > 0 && v6 == len(res.Endpoints) {
		res.AddressType = "IPv6"
	}
	return res
}

// endpointOf makes the endpoint of one selected pod, or says why it has
// none. A listed endpoint may come with a note on ports that did not
// resolve.
func endpointOf(svc *manifests.Service, pod *manifests.Pod, nodes map[string]*manifests.Node) (*manifests.Endpoint, string) {
	if manifests.IsPodTerminal(pod) {
		return nil, ReasonFinished + " (" + pod.Status.Phase + ")"
	}
	if pod.Spec.NodeName == "" {
		return nil, ReasonNotScheduled
	}
	node := nodes[pod.Spec.NodeName]
	if node == nil {
		return nil, ReasonNodeUnknown + ": " + pod.Spec.NodeName
	}
	addr := NodeAddress(node)
	if addr == "" {
		return nil, ReasonNoAddressNode + ": " + pod.Spec.NodeName
	}
	hostPorts := map[string]int32{}
	var missing []string
	for _, sp := range svc.Spec.Ports {
		_, hp, ok := ResolveTargetPort(sp, pod)
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("targetPort %s of port %d is not a declared container port", targetText(sp), sp.Port))
		case hp == 0:
			missing = append(missing, fmt.Sprintf("targetPort %s of port %d has no host port yet", targetText(sp), sp.Port))
		default:
			hostPorts[ServicePortKey(sp)] = hp
		}
	}
	why := ""
	if len(missing) > 0 {
		why = ReasonNotPublished + ": " + strings.Join(missing, "; ")
	}
	if len(svc.Spec.Ports) > 0 && len(hostPorts) == 0 {
		return nil, why
	}
	terminating := pod.DeletionTimestamp != nil
	podReady := manifests.IsPodReady(pod)
	ready := !terminating && (podReady || svc.Spec.PublishNotReadyAddresses)
	ep := &manifests.Endpoint{
		Addresses: []string{addr},
		Conditions: manifests.EndpointConditions{
			Ready: manifests.Ptr(ready), Serving: manifests.Ptr(podReady || svc.Spec.PublishNotReadyAddresses),
			Terminating: manifests.Ptr(terminating)},
		NodeName:  manifests.Ptr(pod.Spec.NodeName),
		TargetRef: &manifests.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		PodIP:     pod.Status.PodIP,
	}
	if len(hostPorts) > 0 {
		ep.HostPorts = hostPorts
	}
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name {
		ep.Hostname = manifests.Ptr(pod.Spec.Hostname)
	}
	return ep, why
}

// endpointsController keeps one EndpointSlice per Service with a
// selector.
type endpointsController struct{ queued }

// nodeMap returns the cached nodes by name.
func (sh *shared) nodeMap() map[string]*manifests.Node {
	out := map[string]*manifests.Node{}
	for _, c := range sh.nodes.List("Node", "") {
		n := c.Obj.(*manifests.Node)
		out[n.Name] = n
	}
	return out
}

// podsIn returns the cached pods of a namespace.
func (sh *shared) podsIn(ns string) []*manifests.Pod {
	cached := sh.objects.List("Pod", ns)
	out := make([]*manifests.Pod, len(cached))
	for i, c := range cached {
		out[i] = c.Obj.(*manifests.Pod)
	}
	return out
}

// sliceOf builds the EndpointSlice a Service should have.
func sliceOf(svc *manifests.Service, res EndpointsResult) *manifests.EndpointSlice {
	return &manifests.EndpointSlice{
		TypeMeta: manifests.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: manifests.ObjectMeta{
			Name: svc.Name, Namespace: svc.Namespace,
			Labels:          map[string]string{LabelServiceName: svc.Name, LabelManagedBy: ManagedByCapstan},
			OwnerReferences: []manifests.OwnerReference{cache.OwnerRef(svc)},
		},
		AddressType: res.AddressType,
		Endpoints:   res.Endpoints,
		Ports:       res.Ports,
	}
}

// sliceContent is what a slice's writer owns, for comparison.
func sliceContent(s *manifests.EndpointSlice) string {
	return manifests.Hash([]any{s.Labels, s.OwnerReferences, s.AddressType, s.Endpoints, s.Ports})
}

func (e *endpointsController) reconcile(ctx context.Context, key string) error {
	_, ns, name, _ := manifests.SplitKey(key)
	sliceKey := manifests.Key("EndpointSlice", ns, name)
	have, exists := e.objects.Get(sliceKey)
	c, ok := e.objects.Get(key)
	var svc *manifests.Service
	if ok {
		svc = c.Obj.(*manifests.Service)
	}
	if svc == nil || !HasSelector(svc) {
		// No selector: no endpoints of ours. A slice of ours left from a
		// selector removed since goes (a deleted Service's goes by GC).
		if exists && svc != nil && cache.IsControlledBy(have.Obj, svc) {
			if err := cache.DeleteObject(ctx, e.store, sliceKey, have.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
				return err
			}
		}
		return nil
	}
	want := sliceOf(svc, EndpointsFor(svc, e.podsIn(ns), e.nodeMap()))
	if !exists {
		if _, err := cache.CreateObject(ctx, e.store, want); err != nil && !errors.Is(err, bus.ErrExists) {
			return err
		}
		return nil
	}
	cur := have.Obj.(*manifests.EndpointSlice)
	if ref := cur.Controller(); ref != nil && ref.UID != svc.UID && ref.Kind == "Service" {
		// The slice of an older Service of this name: the garbage
		// collector removes it, then it is made again.
		return nil
	}
	if sliceContent(cur) == sliceContent(want) {
		return nil
	}
	upd := cache.Clone(cur)
	upd.Labels, upd.OwnerReferences = want.Labels, want.OwnerReferences
	upd.AddressType, upd.Endpoints, upd.Ports = want.AddressType, want.Endpoints, want.Ports
	if _, err := cache.UpdateObject(ctx, e.store, upd, have.Rev); err != nil && !errors.Is(err, bus.ErrNotFound) {
		return err
	}
	return nil
}

// servicesSelecting returns the keys of the Services of ns that select a
// pod with any of the given label sets.
func (sh *shared) servicesSelecting(ns string, pods ...*manifests.Pod) []string {
	var keys []string
	for _, c := range sh.objects.List("Service", ns) {
		svc := c.Obj.(*manifests.Service)
		for _, p := range pods {
			if p != nil && SelectsPod(svc, p) {
				keys = append(keys, c.Key)
				break
			}
		}
	}
	return keys
}

// nodeAddressOrReadinessChanged reports whether a node change can change
// endpoints: its address or its readiness (heartbeats alone do not).
func nodeAddressOrReadinessChanged(old, cur manifests.Object) bool {
	if old == nil || cur == nil {
		return true
	}
	o, n := old.(*manifests.Node), cur.(*manifests.Node)
	return NodeAddress(o) != NodeAddress(n) || manifests.IsNodeReady(o) != manifests.IsNodeReady(n)
}

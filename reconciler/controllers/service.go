package controllers

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/capstan-io/capstan/bus"
	"github.com/capstan-io/capstan/manifests"
	"github.com/capstan-io/capstan/reconciler/cache"
)

// Services. The service controller gives each Service (not headless, not
// ExternalName) a cluster IP from the control plane's range
// (ControlPlane.ServiceCIDR, 10.96.0.0/16 by default) and, when an IPv6
// range is configured (ServiceCIDRv6; the command line's default is
// DefaultServiceCIDRv6 where the host has IPv6), a second one from it
// (dual stack, in spec.clusterIPs and spec.ipFamilies; see families for
// the policy); it gives each port of a NodePort Service a node port
// in 30000-32767. A clusterIP or nodePort Git sets is kept when it is in
// range and free. What was allocated is written to the Service's spec, as
// Kubernetes does; the sync keeps it when Git leaves those fields empty
// (withAllocated). The allocations are derived from the Services on the
// bus (the cache), so they survive restarts; two Services claiming one
// address or port: the older keeps it, the other gets a condition.
//
// The controller also owns the Service's status conditions:
//
//   - Allocated: False with ClusterIPNotInRange, ClusterIPAlreadyAllocated,
//     NodePortAlreadyAllocated, IPv6NotConfigured or RangeFull;
//   - PodsSelected: False (NoPodsSelected) when the selector matches no pod;
//   - PortsResolved: False (TargetPortNotExposed) when a targetPort is
//     declared by no container of a selected pod (only declared container
//     ports are published on the nodes).
//
// Each change to False is also a Warning event with the condition's reason.

// Service condition types.
const (
	ServiceAllocated     = "Allocated"
	ServicePodsSelected  = "PodsSelected"
	ServicePortsResolved = "PortsResolved"
)

// The node port range, as Kubernetes' default.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// Default service ranges.
const (
	DefaultServiceCIDR = "10.96.0.0/16"
	// DefaultServiceCIDRv6 is the IPv6 range of dual-stack cluster IPs:
	// a unique local range (the one kind and many Kubernetes guides use),
	// its cluster DNS address fd00:10:96::a.
	DefaultServiceCIDRv6 = "fd00:10:96::/112"
	// DNSServiceOffset is the offset in the service range of the address
	// the cluster DNS answers on (10.96.0.10 in the default range). It and
	// the first address (.1) are never allocated to a Service.
	DNSServiceOffset = 10
)

// DNSServiceIP returns the cluster DNS address of a service range: its
// network address plus DNSServiceOffset (10.96.0.10 for 10.96.0.0/16).
func DNSServiceIP(cidr string) (netip.Addr, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("service range %q: %w", cidr, err)
	}
	return nthAddr(p.Masked(), DNSServiceOffset), nil
}

// nthAddr returns the address n after the prefix's network address.
func nthAddr(p netip.Prefix, n int64) netip.Addr {
	b := new(big.Int).SetBytes(p.Addr().AsSlice())
	b.Add(b, big.NewInt(n))
	out := make([]byte, p.Addr().BitLen()/8)
	b.FillBytes(out)
	a, _ := netip.AddrFromSlice(out)
	return a
}

// ipRange is one service range, with the size of its usable part.
type ipRange struct {
	prefix netip.Prefix
	size   int64 // addresses from offset 0, capped
}

func newIPRange(cidr string) (*ipRange, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, fmt.Errorf("service range %q: %w", cidr, err)
	}
	p = p.Masked()
	host := p.Addr().BitLen() - p.Bits()
	if host < 4 {
		return nil, fmt.Errorf("service range %q: too small (want at least /%d)", cidr, p.Addr().BitLen()-4)
	}
	size := int64(1) << min(host, 20) // more than a million is never needed
	return &ipRange{prefix: p, size: size}, nil
}

// reserved reports whether the address at offset n is not allocatable:
// the network address, .1, the DNS address and the last (broadcast).
func (r *ipRange) reserved(n int64) bool {
	return n <= 1 || n == DNSServiceOffset || n >= r.size-1
}

func (r *ipRange) family() string {
	if r.prefix.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// allocator holds who owns each cluster IP and node port: resource ->
// owner. It is fed by the cache's Service events (the bus is the record)
// and by the controller's own allocations, assumed until the cache shows
// them. Safe for concurrent use.
type allocator struct {
	mu     sync.Mutex
	owners map[string]owner // "ip/10.96.0.12", "port/tcp/30080"
	byKey  map[string][]string
}

type owner struct {
	key     string
	created time.Time
	// allocated: the Service's status says it holds its allocations
	// (condition Allocated True), which settles a tie of creation times
	// (they have second precision) in favour of the incumbent, on the
	// bus, so also across restarts.
	allocated bool
}

func newAllocator() *allocator {
	return &allocator{owners: map[string]owner{}, byKey: map[string][]string{}}
}

// older reports whether o owns before b: the older Service, then the
// one that holds its allocations, then the smaller key.
func (o owner) older(b owner) bool {
	if !o.created.Equal(b.created) {
		return o.created.Before(b.created)
	}
	if o.allocated != b.allocated {
		return o.allocated
	}
	return o.key < b.key
}

// set makes key the owner of exactly res (a.mu held), taking a resource
// from a younger owner (returned, to be re-queued) and leaving one an
// older owner holds (returned as lost).
func (a *allocator) set(o owner, res []string) (lost, displaced []string) {
	for _, r := range a.byKey[o.key] {
		if !slices.Contains(res, r) && a.owners[r].key == o.key {
			delete(a.owners, r)
		}
	}
	var kept []string
	for _, r := range res {
		cur, taken := a.owners[r]
		switch {
		case !taken || cur.key == o.key:
		case o.older(cur):
			displaced = append(displaced, cur.key)
		default:
			lost = append(lost, r)
			continue
		}
		a.owners[r] = o
		kept = append(kept, r)
	}
	if len(kept) == 0 {
		delete(a.byKey, o.key)
	} else {
		a.byKey[o.key] = kept
	}
	return lost, displaced
}

// free reports whether r is free for o (a.mu held).
func (a *allocator) free(o owner, r string) bool {
	cur, taken := a.owners[r]
	return !taken || cur.key == o.key
}

// resourcesOf lists what a Service holds according to its spec.
func resourcesOf(svc *manifests.Service) []string {
	var res []string
	if svc.Spec.Type != manifests.ServiceExternalName {
		ips := slices.Clone(svc.Spec.ClusterIPs)
		if svc.Spec.ClusterIP != "" && !slices.Contains(ips, svc.Spec.ClusterIP) {
			ips = append(ips, svc.Spec.ClusterIP)
		}
		for _, ip := range ips {
			if a, err := netip.ParseAddr(ip); err == nil {
				res = append(res, "ip/"+a.String())
			}
		}
	}
	if svc.Spec.Type == manifests.ServiceNodePort {
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				res = append(res, nodePortRes(p.Protocol, p.NodePort))
			}
		}
	}
	return res
}

func nodePortRes(proto string, port int32) string {
	return fmt.Sprintf("port/%s/%d", strings.ToLower(manifests.ProtocolOf(proto)), port)
}

// serviceController allocates and writes a Service's cluster IPs and node
// ports and its status conditions.
type serviceController struct {
	queued
	alloc  *allocator
	ranges []*ipRange // IPv4 first, then IPv6 when configured
}

// newServiceController makes the controller of the ranges cp configures
// (ServiceCIDR, ServiceCIDRv6).
func newServiceController(sh *shared, cp *ControlPlane) (*serviceController, error) {
	s := &serviceController{queued: newQueued(sh, ""), alloc: newAllocator()}
	for _, cidr := range []string{cp.ServiceCIDR, cp.ServiceCIDRv6} {
		if cidr == "" {
			continue
		}
		r, err := newIPRange(cidr)
		if err != nil {
			return nil, err
		}
		s.ranges = append(s.ranges, r)
	}
	if len(s.ranges) == 0 || !s.ranges[0].prefix.Addr().Is4() || (len(s.ranges) == 2 && s.ranges[1].prefix.Addr().Is4()) {
		return nil, fmt.Errorf("service ranges %q, %q: want an IPv4 range and optionally an IPv6 one", cp.ServiceCIDR, cp.ServiceCIDRv6)
	}
	return s, nil
}

// onService keeps the allocator equal to the Services' specs.
func (s *serviceController) onService(key string, old, cur manifests.Object) {
	if (cur == nil && old.GetTypeMeta().Kind != "Service") || (cur != nil && cur.GetTypeMeta().Kind != "Service") {
		return
	}
	s.alloc.mu.Lock()
	var displaced []string
	if cur == nil {
		s.alloc.set(owner{key: key}, nil)
	} else {
		svc := cur.(*manifests.Service)
		_, displaced = s.alloc.set(ownerOf(key, svc), resourcesOf(svc))
	}
	s.alloc.mu.Unlock()
	for _, k := range displaced {
		s.queue.Add(k)
	}
}

func ownerOf(key string, svc *manifests.Service) owner {
	o := owner{key: key}
	if svc.CreationTimestamp != nil {
		o.created = svc.CreationTimestamp.Time
	}
	c := manifests.FindCondition(svc.Status.Conditions, ServiceAllocated)
	o.allocated = c != nil && c.Status == manifests.ConditionTrue
	return o
}

// allocation is what the controller decided for one Service.
type allocation struct {
	clusterIP  string
	clusterIPs []string
	families   []string
	nodePorts  []int32 // per port; 0 when none
	problem    *manifests.Condition
}

// families returns the IP families a Service gets, its primary first.
//
// Decision (dual stack by default): a Service without ipFamilyPolicy is
// PreferDualStack, not SingleStack as in Kubernetes: where the control
// plane has an IPv6 range (--service-cidr-v6, on by default where the host
// has IPv6), every Service gets a cluster IP of each family, and where it
// has none, IPv4 only, without an error. An address costs nothing here
// (endpoints are node addresses either way), and Kubernetes' reason for
// SingleStack (existing Services of a cluster upgraded to dual stack
// must not change) does not apply. The policy is left as Git has it (not
// written back), so a cluster that gains or loses its IPv6 range re-plans
// every Service that did not choose: the allocated ipFamilies only order
// the families (the primary first), as they do in Kubernetes.
//
//   - SingleStack: the primary family only (ipFamilies[0], else the family
//     of a given clusterIP, else IPv4);
//   - PreferDualStack (and unset): both families, the one without a range
//     left out;
//   - RequireDualStack: both, or a condition (IPv6NotConfigured).
//
// A primary family without a range is a condition in every policy.
func (s *serviceController) families(svc *manifests.Service) ([]string, *manifests.Condition) {
	policy := "PreferDualStack"
	if p := svc.Spec.IPFamilyPolicy; p != nil && *p != "" {
		policy = *p
	}
	var fams []string
	add := func(f string) {
		if !slices.Contains(fams, f) {
			fams = append(fams, f)
		}
	}
	for _, f := range svc.Spec.IPFamilies {
		add(f)
	}
	if len(fams) == 0 {
		for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if a, err := netip.ParseAddr(ip); err == nil {
				add(familyOf(a))
			}
		}
	}
	if len(fams) == 0 {
		add("IPv4")
	}
	if policy != "SingleStack" {
		add(map[string]string{"IPv4": "IPv6", "IPv6": "IPv4"}[fams[0]])
	}
	if policy == "SingleStack" {
		fams = fams[:1]
	}
	if s.rangeOf(fams[0]) == nil {
		return nil, &manifests.Condition{Reason: "IPv6NotConfigured", Message: fmt.Sprintf("no %s service range is configured (--service-cidr-v6)", fams[0])}
	}
	if len(fams) == 2 && s.rangeOf(fams[1]) == nil {
		if policy == "RequireDualStack" {
			return nil, &manifests.Condition{Reason: "IPv6NotConfigured", Message: "ipFamilyPolicy RequireDualStack, but the control plane has no IPv6 service range (--service-cidr-v6)"}
		}
		fams = fams[:1]
	}
	return fams, nil
}

// familyOf names an address's IP family.
func familyOf(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "IPv4"
	}
	return "IPv6"
}

func (s *serviceController) rangeOf(family string) *ipRange {
	for _, r := range s.ranges {
		if r.family() == family {
			return r
		}
	}
	return nil
}

// allocate decides a Service's addresses and node ports, claiming them in
// the allocator (s.alloc.mu held).
func (s *serviceController) allocate(key string, svc *manifests.Service) allocation {
	o := ownerOf(key, svc)
	var out allocation
	var claim []string
	// A problem leaves the allocator as it is: the Service keeps what its
	// spec holds, and nothing new is claimed.
	fail := func(reason, format string, args ...any) allocation {
		return allocation{problem: &manifests.Condition{Reason: reason, Message: fmt.Sprintf(format, args...)}}
	}
	headless := svc.Spec.ClusterIP == manifests.ClusterIPNone
	if svc.Spec.Type != manifests.ServiceExternalName && !headless {
		fams, problem := s.families(svc)
		if problem != nil {
			return allocation{problem: problem}
		}
		// What the spec already holds, by family (given in Git, or
		// allocated before).
		given := map[string]netip.Addr{}
		for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if a, err := netip.ParseAddr(ip); err == nil {
				if f := familyOf(a); !given[f].IsValid() {
					given[f] = a.Unmap()
				}
			}
		}
		for _, f := range fams {
			r := s.rangeOf(f)
			if a, ok := given[f]; ok {
				switch {
				case !r.prefix.Contains(a):
					return fail("ClusterIPNotInRange", "cluster IP %s is not in the service range %s", a, r.prefix)
				case !s.alloc.free(o, "ip/"+a.String()):
					return fail("ClusterIPAlreadyAllocated", "cluster IP %s is already allocated to %s", a, nameOfKey(s.alloc.owners["ip/"+a.String()].key))
				}
				claim = append(claim, "ip/"+a.String())
				out.clusterIPs = append(out.clusterIPs, a.String())
				continue
			}
			a, ok := s.freeIP(o, r, key)
			if !ok {
				return fail("RangeFull", "no free address left in the service range %s", r.prefix)
			}
			claim = append(claim, "ip/"+a.String())
			out.clusterIPs = append(out.clusterIPs, a.String())
		}
		out.families = fams
		out.clusterIP = out.clusterIPs[0]
	}
	if svc.Spec.Type == manifests.ServiceNodePort {
		out.nodePorts = make([]int32, len(svc.Spec.Ports))
		// Given ports first, so an allocation never takes one of them.
		for i, p := range svc.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			r := nodePortRes(p.Protocol, p.NodePort)
			if !s.alloc.free(o, r) || slices.Contains(claim, r) {
				return fail("NodePortAlreadyAllocated", "node port %d/%s is already allocated to %s", p.NodePort, manifests.ProtocolOf(p.Protocol),
					nameOfKey(s.alloc.owners[r].key))
			}
			claim = append(claim, r)
			out.nodePorts[i] = p.NodePort
		}
		for i, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				continue
			}
			n, ok := s.freeNodePort(o, p.Protocol, key, i, claim)
			if !ok {
				return fail("RangeFull", "no free node port left in %d-%d", NodePortMin, NodePortMax)
			}
			claim = append(claim, nodePortRes(p.Protocol, n))
			out.nodePorts[i] = n
		}
	}
	s.alloc.set(o, claim)
	return out
}

// nameOfKey turns an object key into namespace/name for messages.
func nameOfKey(key string) string {
	_, ns, name, _ := manifests.SplitKey(key)
	return ns + "/" + name
}

// seed is where a Service's search for a free address or port starts: a
// hash of its key, so allocations spread and a released address is not
// handed out again at once.
func seed(key string, salt int) int64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", key, salt)
	return int64(h.Sum64() >> 1)
}

func (s *serviceController) freeIP(o owner, r *ipRange, key string) (netip.Addr, bool) {
	// One this Service already holds in the range (an allocation not yet
	// written back) is reused.
	for _, res := range s.alloc.byKey[o.key] {
		if a, err := netip.ParseAddr(strings.TrimPrefix(res, "ip/")); err == nil && r.prefix.Contains(a) {
			return a, true
		}
	}
	start := seed(key, 0) % r.size
	for i := range r.size {
		n := (start + i) % r.size
		if r.reserved(n) {
			continue
		}
		a := nthAddr(r.prefix, n)
		if s.alloc.free(o, "ip/"+a.String()) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (s *serviceController) freeNodePort(o owner, proto, key string, idx int, claimed []string) (int32, bool) {
	for _, res := range s.alloc.byKey[o.key] {
		if strings.HasPrefix(res, "port/"+strings.ToLower(manifests.ProtocolOf(proto))+"/") && !slices.Contains(claimed, res) {
			var n int32
			if _, err := fmt.Sscanf(res[strings.LastIndexByte(res, '/')+1:], "%d", &n); err == nil {
				return n, true
			}
		}
	}
	size := int64(NodePortMax - NodePortMin + 1)
	start := seed(key, idx+1) % size
	for i := range size {
		n := int32(NodePortMin + (start+i)%size)
		r := nodePortRes(proto, n)
		if s.alloc.free(o, r) && !slices.Contains(claimed, r) {
			return n, true
		}
	}
	return 0, false
}

func (s *serviceController) reconcile(ctx context.Context, key string) error {
	c, ok := s.objects.Get(key)
	if !ok {
		return nil
	}
	svc := c.Obj.(*manifests.Service)
	s.alloc.mu.Lock()
	al := s.allocate(key, svc)
	s.alloc.mu.Unlock()

	upd := cache.Clone(svc)
	if al.problem == nil {
		if svc.Spec.Type != manifests.ServiceExternalName && svc.Spec.ClusterIP != manifests.ClusterIPNone {
			upd.Spec.ClusterIP, upd.Spec.ClusterIPs, upd.Spec.IPFamilies = al.clusterIP, al.clusterIPs, al.families
		}
		for i := range upd.Spec.Ports {
			if i < len(al.nodePorts) {
				upd.Spec.Ports[i].NodePort = al.nodePorts[i]
			}
		}
	}
	now := manifests.Now()
	var conds []manifests.Condition
	allocated := manifests.Condition{Type: ServiceAllocated, Status: manifests.ConditionTrue, Reason: "Allocated", Message: allocatedText(upd)}
	if al.problem != nil {
		allocated = *al.problem
		allocated.Type, allocated.Status = ServiceAllocated, manifests.ConditionFalse
	}
	conds = append(conds, allocated)
	if HasSelector(svc) {
		conds = append(conds, selectionConditions(svc, s.podsIn(svc.Namespace))...)
	}
	var warnings []manifests.Condition
	for _, cond := range conds {
		old := manifests.FindCondition(svc.Status.Conditions, cond.Type)
		cond.LastTransitionTime = now
		if old != nil && old.Status == cond.Status {
			cond.LastTransitionTime = old.LastTransitionTime
		}
		if cond.Status == manifests.ConditionFalse && (old == nil || old.Status != cond.Status || old.Reason != cond.Reason) {
			warnings = append(warnings, cond)
		}
		upd.Status.Conditions = putCond(upd.Status.Conditions, cond)
	}
	// Conditions no longer computed (a selector removed) go.
	upd.Status.Conditions = slices.DeleteFunc(upd.Status.Conditions, func(c manifests.Condition) bool {
		return !slices.ContainsFunc(conds, func(d manifests.Condition) bool { return d.Type == c.Type })
	})
	if manifests.Hash(upd.Spec) == manifests.Hash(svc.Spec) && manifests.Hash(upd.Status) == manifests.Hash(svc.Status) {
		return nil
	}
	if _, err := cache.UpdateObject(ctx, s.store, upd, c.Rev); err != nil {
		if errors.Is(err, bus.ErrNotFound) {
			return nil
		}
		return err
	}
	if al.problem == nil && manifests.Hash(upd.Spec) != manifests.Hash(svc.Spec) {
		s.event(ctx, upd, "Normal", "Allocated", allocatedText(upd))
	}
	for _, w := range warnings {
		s.event(ctx, upd, "Warning", w.Reason, w.Message)
	}
	return nil
}

// putCond replaces or appends c by type.
func putCond(conds []manifests.Condition, c manifests.Condition) []manifests.Condition {
	for i := range conds {
		if conds[i].Type == c.Type {
			conds[i] = c
			return conds
		}
	}
	return append(conds, c)
}

// allocatedText says what a Service holds.
func allocatedText(svc *manifests.Service) string {
	var parts []string
	switch {
	case svc.Spec.Type == manifests.ServiceExternalName:
		parts = append(parts, "ExternalName "+svc.Spec.ExternalName)
	case svc.Spec.ClusterIP == manifests.ClusterIPNone:
		parts = append(parts, "headless")
	default:
		ips := svc.Spec.ClusterIPs
		if len(ips) == 0 && svc.Spec.ClusterIP != "" {
			ips = []string{svc.Spec.ClusterIP}
		}
		parts = append(parts, "cluster IP "+strings.Join(ips, ","))
	}
	var ports []string
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			ports = append(ports, fmt.Sprintf("%d/%s", p.NodePort, manifests.ProtocolOf(p.Protocol)))
		}
	}
	if len(ports) > 0 {
		parts = append(parts, "node ports "+strings.Join(ports, ","))
	}
	return strings.Join(parts, ", ")
}

// selectionConditions says whether a Service's selector matches pods and
// whether each targetPort is declared by the selected pods. It is pure.
func selectionConditions(svc *manifests.Service, pods []*manifests.Pod) []manifests.Condition {
	var selected []*manifests.Pod
	for _, p := range pods {
		if SelectsPod(svc, p) && !manifests.IsPodTerminal(p) {
			selected = append(selected, p)
		}
	}
	sel := manifests.Condition{Type: ServicePodsSelected, Status: manifests.ConditionTrue, Reason: "PodsSelected"}
	if len(selected) == 0 {
		sel = manifests.Condition{Type: ServicePodsSelected, Status: manifests.ConditionFalse, Reason: "NoPodsSelected",
			Message: fmt.Sprintf("selector %s matches no pod in namespace %s", formatSelector(svc.Spec.Selector), svc.Namespace)}
	}
	ports := manifests.Condition{Type: ServicePortsResolved, Status: manifests.ConditionTrue, Reason: "PortsResolved"}
	slices.SortFunc(selected, func(a, b *manifests.Pod) int { return strings.Compare(a.Name, b.Name) })
	var bad []string
	for _, sp := range svc.Spec.Ports {
		var without []string
		for _, p := range selected {
			if _, _, ok := ResolveTargetPort(sp, p); !ok {
				without = append(without, p.Name)
			}
		}
		if len(without) > 0 {
			more := ""
			if len(without) > 3 {
				more = fmt.Sprintf(" and %d more", len(without)-3)
				without = without[:3]
			}
			bad = append(bad, fmt.Sprintf("targetPort %s of port %d is declared by no container of pod %s%s", targetText(sp), sp.Port, strings.Join(without, ", "), more))
		}
	}
	if len(bad) > 0 {
		ports = manifests.Condition{Type: ServicePortsResolved, Status: manifests.ConditionFalse, Reason: "TargetPortNotExposed", Message: strings.Join(bad, "; ")}
	}
	return []manifests.Condition{sel, ports}
}

func formatSelector(sel map[string]string) string {
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + sel[k]
	}
	return strings.Join(keys, ",")
}

// serviceControllers makes the service and endpoints controllers and
// registers their handlers, together: a pod's change is matched against
// its namespace's Services once for both. It must run before the caches
// do.
func serviceControllers(sh *shared, cp *ControlPlane) ([]*controller, error) {
	svcs, err := newServiceController(sh, cp)
	if err != nil {
		return nil, err
	}
	svcCtl := &controller{name: "service", queue: svcs.queue, reconcile: svcs.reconcile, resync: sh.keysOf("Service")}
	eps := &endpointsController{newQueued(sh, "")}
	epCtl := &controller{name: "endpoints", queue: eps.queue, reconcile: eps.reconcile, resync: sh.keysOf("Service")}
	both := func(keys ...string) {
		for _, k := range keys {
			svcCtl.queue.Add(k)
			epCtl.queue.Add(k)
		}
	}
	sh.objects.AddHandler(svcs.onService)
	sh.objects.AddHandler(func(key string, old, cur manifests.Object) {
		obj := cur
		if obj == nil {
			obj = old
		}
		switch obj.GetTypeMeta().Kind {
		case "Service":
			both(key)
		case "Pod":
			var o, n *manifests.Pod
			if old != nil {
				o = old.(*manifests.Pod)
			}
			if cur != nil {
				n = cur.(*manifests.Pod)
			}
			both(sh.servicesSelecting(obj.GetObjectMeta().Namespace, o, n)...)
		case "EndpointSlice":
			// A slice changed or deleted behind the controller's back is
			// put back.
			if svc := obj.GetObjectMeta().Labels[LabelServiceName]; svc != "" {
				epCtl.queue.Add(manifests.Key("Service", obj.GetObjectMeta().Namespace, svc))
			}
		}
	})
	sh.nodes.AddHandler(func(key string, old, cur manifests.Object) {
		if !nodeAddressOrReadinessChanged(old, cur) {
			return
		}
		for _, c := range sh.objects.List("Service", "") {
			if HasSelector(c.Obj.(*manifests.Service)) {
				epCtl.queue.Add(c.Key)
			}
		}
	})
	return []*controller{svcCtl, epCtl}, nil
}
